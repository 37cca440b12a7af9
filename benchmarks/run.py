"""reslab's speed beside what a PyTorch user writes by hand, measured in one invocation.

    python benchmarks/run.py                    # every case on the real data (../shared)
    python benchmarks/run.py --cases cifar,inference
    python benchmarks/run.py --quick            # tiny generated data, a few steps, the
                                                # first model and batch size of each case (tests)

Each measurement runs in a fresh subprocess, one after the other, so that neither side
inherits the other's allocator state, threads or caches: the baseline with the default
allocator, reslab's path the way `reslab train` runs it (with its glibc malloc tuning).
Inference variants, whose differences are a few percent, each keep a process of their
own and are timed in interleaved rounds, so that drift of a shared machine hits all alike.
Figures are printed and appended as JSON lines to --out.

Cases (issue "Speed"): 1 CIFAR training end to end, 2 ImageFolder training,
3 inference, 4 ResNet-1202 training-step memory, 5 time to accuracy (read from runs),
6 int8 inference (int8_case.py), 7 the peak memory (process-tree PSS and RSS) of a run
that trains, then evaluates (train_eval_case.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import int8_case  # benchmarks/: the script's own folder is first on sys.path
import torch
import train_eval_case

from reslab.provenance import ISA_LIMITS, limit_isa, usable_isa
from reslab.provenance import cpu as cpu_info

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "datasets"
MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


# ---------------------------------------------------------------------------- workers


def matmul_peak(n: int = 4096, reps: int = 5) -> float:
    """fp32 GFLOP/s of an n x n matmul: the machine's practical ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def train_flops_per_image(model: torch.nn.Module, size: int) -> float:
    """FLOPs of forward + backward for one image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def peak_rss_mb() -> float:
    """Peak RSS of this process and its children (the DataLoader workers), MiB: what a
    run's summary.json records."""
    from reslab.training.runstate import peak_rss_mb as peak

    return peak()


def baseline_train(
    model_name: str, dataset, steps: int, batch: int, size: int, device: str = "cpu"
) -> tuple[float, float]:
    """Eager NCHW fp32 model, per-sample Dataset in a 2-worker DataLoader: images/s, and
    peak RSS (MiB) with the workers, read while they are alive."""
    from torch.utils.data import DataLoader

    from reslab import create_model

    model = create_model(model_name, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(
        dataset, batch, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    warm = max(2, steps // 4)
    it = iter(loader)
    t, n = 0.0, 0
    for i in range(warm + steps):
        if i == warm:
            t, n = time.perf_counter(), 0
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
    loss.item()  # wait for the device
    return n / (time.perf_counter() - t), peak_rss_mb()


def reslab_train(
    model_name: str,
    dataset: str,
    data_dir: str,
    steps: int,
    batch: int,
    size: int | None,
    compile: bool = False,
    device: str = "cpu",
    cuda_graphs: bool = False,
    amp: str | None = None,
) -> tuple[float, float]:
    """`reslab.train` itself: steady-state images/s of its second logging interval, and
    the run's peak RSS (MiB, with its child processes) from its summary.json."""
    from reslab.config import make_config
    from reslab.training.loop import train

    with tempfile.TemporaryDirectory() as out:
        cfg = make_config(
            "cifar-paper",
            model=model_name,
            dataset=dataset,
            data_dir=data_dir,
            out=out,
            batch_size=batch,
            iterations=2 * steps,
            log_every=steps,
            eval_every=10**9,
            checkpoint_every=10**9,
            val_size=0,
            image_size=size,
            progress=False,
            compile=compile,
            milestones=(),
            device=device,
            cuda_graphs=cuda_graphs,
            amp=amp,
        )
        train(cfg)
        recs = [json.loads(r) for r in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        peak = json.loads((Path(out) / "summary.json").read_text())["peak_rss_mb"]
    return [r for r in recs if r["kind"] == "train"][-1]["images_per_s"], peak


def graphed_train(model_name: str, data_dir: str, steps: int, batch: int) -> float:
    """reslab's data, model and bf16 autocast on CUDA, with forward, backward and the SGD
    step captured once as a CUDA graph and replayed (the PyTorch "whole network capture"
    recipe): one launch per step instead of hundreds. Benchmark only: the graph bakes in a
    constant learning rate, so `reslab train` does not use it."""
    from reslab import create_model
    from reslab.data import build_data

    dev = torch.device("cuda")
    data = build_data(
        "cifar10", data_dir, batch_size=batch, val_size=0, device=dev, channels_last=True
    ).train
    model = create_model(model_name, num_classes=10).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batches = (b for e in range(10**6) for b in data.epoch(e))
    static_x, static_y = (t.clone() for t in next(batches))

    def step() -> torch.Tensor:
        with torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            loss = torch.nn.functional.cross_entropy(model(static_x), static_y)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: creates momentum buffers, picks kernels
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = step()
    warm = max(2, steps // 4)
    t, n = 0.0, 0
    for i in range(warm + steps):
        if i == warm:
            torch.cuda.synchronize()
            t, n = time.perf_counter(), 0
        x, y = next(batches)
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        n += len(y)
    static_loss.item()  # wait for the device
    return n / (time.perf_counter() - t), peak_rss_mb()


def cifar_dataset(data_dir: str):
    """The baseline's per-sample dataset over the same decoded images reslab uses."""
    sys.path.insert(0, str(HERE))
    from data_pipeline import NaiveCifar

    from reslab.data import build_data

    loader = build_data("cifar10", data_dir, batch_size=128, val_size=0).train
    return NaiveCifar(loader.x.cpu(), loader.y.cpu())


def folder_dataset(data_dir: str, size: int):
    sys.path.insert(0, str(HERE))
    from data_pipeline import NaiveFolder

    from reslab.data import build_data

    ds = build_data(
        "imagefolder",
        data_dir,
        batch_size=8,
        val_size=0,
        image_size=size,
        workers=0,
        decoded_cache=False,
    ).train.loader.dataset
    return NaiveFolder([str(p) for p in ds.paths], ds.labels.tolist(), size)


def folder_cache_build(data_dir: str, size: int, cache: str) -> dict:
    """Seconds to decode the training split into reslab's uint8 cache (2 workers)."""
    from reslab.data.folder_cache import decoded_split, stored_side
    from reslab.data.sources import find_tree, index_tree

    train = index_tree(find_tree(Path(data_dir), Path(cache)))["train"]
    split = decoded_split(
        train.root, train.paths, stored_side(size), Path(cache), limit_bytes=2**62
    )
    return {
        "build_s": split.build_s,
        "images": len(train.paths),
        "gib": split.images.nbytes / 2**30,
    }


def inference_runner(model_name: str, variant: str, batch: int, size: int):
    """A function that classifies one batch at `size` px the way `variant` does."""
    from reslab import create_model
    from reslab.inference import optimize_for_inference

    model = create_model(model_name).eval()
    x = torch.randn(batch, 3, size, size)
    if variant == "eager":

        def run():  # noqa: E306
            with torch.no_grad():
                model(x)
    elif variant.startswith("reslab") and variant != "reslab:int8":
        mode = variant.split(":")[1] if ":" in variant else "auto"
        fast = optimize_for_inference(model, x[:1], mode=mode)
        # Each mode's own layout: the jit graph is NCHW, the others channels-last
        # ("reslab" is the default, mode "auto": "onednn" on CPU).
        xc = x if mode == "jit" else x.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                fast(xc)
    else:  # reslab int8, ONNX Runtime fp32 or int8 on reslab's export (int8_case.py)
        run = int8_case.runner(model, variant, x)

    for _ in range(3):
        run()
    return run


def serve_inference(params: dict, variant: str, build=None) -> None:
    """Worker side of `inference_rounds`: build (`build`, default `inference_runner`), say
    "ready", then time `reps` calls per line read from stdin, answering each with one JSON
    list of seconds."""
    run = (build or inference_runner)(params["model"], variant, params["batch"], params["size"])
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


def inference_rounds(
    variants: list[str],
    params: dict,
    rounds: int,
    script: str = __file__,
    env: dict[str, dict[str, str]] | None = None,
) -> dict[str, dict]:
    """Median seconds per batch of each variant, each in its own process (the eager
    baseline with the default allocator), timed in interleaved rounds: one variant at a
    time, `reps` calls each, round after round. On a shared machine whose speed drifts,
    this keeps the comparison fair where back-to-back runs would not. `script --serve`
    builds the variants (levers.py has its own); `env` adds variables to some of them."""
    procs = {}
    for v in variants:
        cmd = [sys.executable, script, "--serve", "inference", v, json.dumps(params)]
        venv = {**worker_env(malloc=v != "eager"), **(env or {}).get(v, {})}
        procs[v] = subprocess.Popen(
            cmd,
            env=venv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    times: dict[str, list[float]] = {}
    failed: dict[str, dict] = {}
    for v, proc in procs.items():  # all build at once; timing starts when all are ready
        if proc.stdout.readline().strip() == "ready":
            times[v] = []
        else:
            proc.stdin.close()
            failed[v] = {"error": proc.stderr.read().strip().splitlines()[-1:]}
    for _ in range(rounds):
        for v in times:
            procs[v].stdin.write(f"{params['reps']}\n")
            procs[v].stdin.flush()
            times[v] += json.loads(procs[v].stdout.readline())
    for v in times:
        procs[v].stdin.close()
    for proc in procs.values():
        proc.wait()
    res = {v: {"seconds": statistics.median(t), "calls": len(t)} for v, t in times.items()}
    return {v: res.get(v) or failed[v] for v in variants}


def step_memory(checkpointing: bool, batch: int, n: int) -> float:
    """Peak RSS (MiB) of one ResNet-(6n+2) training step at 32 px."""
    import resource

    from reslab import create_model

    model = create_model("resnet20", n=n, grad_checkpointing=checkpointing)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(case: str, variant: str, params: dict) -> dict:
    torch.manual_seed(0)
    p = params
    if case == "peak":
        return {"gflops": matmul_peak(p.get("n", 4096))}
    if case == "cifar":
        if variant == "baseline":
            ds = cifar_dataset(p["data_dir"])
            ips, peak = baseline_train(p["model"], ds, p["steps"], p["batch"], 32, p["device"])
        elif variant == "reslab+cudagraph":
            ips, peak = graphed_train(p["model"], p["data_dir"], p["steps"], p["batch"])
        else:
            ips, peak = reslab_train(
                p["model"],
                "cifar10",
                p["data_dir"],
                p["steps"],
                p["batch"],
                None,
                compile=variant == "reslab+compile",
                device=p["device"],
                cuda_graphs=variant == "reslab --cuda-graphs",
                amp="bf16" if variant == "reslab --amp bf16" else None,
            )
        from reslab import create_model

        flops = train_flops_per_image(create_model(p["model"]), 32)
        return {"images_per_s": ips, "train_gflop_per_image": flops / 1e9, "peak_rss_mb": peak}
    if case == "folder-cache":  # building the decoded-image cache, in a fresh folder
        return folder_cache_build(p["data_dir"], p["size"], p["cache"])
    if case == "folder":
        if variant == "baseline":
            ds = folder_dataset(p["data_dir"], p["size"])
            ips, peak = baseline_train(p["model"], ds, p["steps"], p["batch"], p["size"])
        else:
            # "reslab" decodes JPEGs while training (the cache off); "reslab+cache" trains
            # from the decoded rows the folder-cache case built
            if variant == "reslab+cache":
                os.environ["RESLAB_CACHE"] = p["cache"]
            else:
                os.environ["RESLAB_FOLDER_CACHE_GB"] = "0"
            ips, peak = reslab_train(
                p["model"], "imagefolder", p["data_dir"], p["steps"], p["batch"], p["size"]
            )
        return {"images_per_s": ips, "peak_rss_mb": peak}
    if case == "memory":
        return {"peak_rss_mb": step_memory(variant == "checkpointing", p["batch"], p["n"])}
    raise ValueError(f"unknown case {case!r}")


# ---------------------------------------------------------------------------- driver


def worker_env(malloc: bool) -> dict[str, str]:
    """This process's environment for a worker: with reslab's glibc malloc tuning, or
    with the default allocator (what a hand-written baseline gets)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if malloc:
        env["GLIBC_TUNABLES"] = MALLOC
    return env


def measure(case: str, variant: str, params: dict, malloc: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, variant, json.dumps(params)]
    proc = subprocess.run(cmd, env=worker_env(malloc), capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def side_by_side(title: str, rows: list[tuple[str, dict]], key: str, higher: bool, unit: str):
    base = rows[0][1].get(key)
    print(f"\n{title}")
    for name, res in rows:
        if key not in res:
            print(f"  {name:<28} failed: {res.get('error')}")
            continue
        ratio = (res[key] / base if higher else base / res[key]) if base else float("nan")
        mem = ""
        if "peak_rss_mb" in res and key != "peak_rss_mb":  # training cases: memory beside speed
            mem = f"  peak RSS {res['peak_rss_mb']:>7,.0f} MiB"
        print(f"  {name:<28} {res[key]:>12,.4g} {unit:<8} {ratio:6.2f}x baseline{mem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="tiny generated data, a few steps")
    ap.add_argument("--cases", default="cifar,folder,inference,memory,tta,int8,train-eval")
    ap.add_argument("--cifar", default=str(SHARED / "cifar10-train-jpeg.tar.gz"))
    ap.add_argument("--imagefolder", default=str(SHARED / "imagenette-224-train.tar"))
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per case")
    ap.add_argument(
        "--folder-models", default="resnet18:128,resnet50:224", help="folder case: model:size pairs"
    )
    ap.add_argument(
        "--train-eval-models",
        default="resnet18:128,resnet50:224",
        help="train-eval case: model:size pairs",
    )
    ap.add_argument(
        "--train-eval-steps",
        type=int,
        default=3,
        help="train-eval case: training steps before the evaluation",
    )
    ap.add_argument(
        "--val-images",
        type=int,
        default=946,
        help="train-eval case: held-out images evaluated (the recipe's 10%%)",
    )
    ap.add_argument("--tta-runs", nargs="*", default=[], help="run folders for time-to-accuracy")
    ap.add_argument("--out", help="append results as JSON lines to this file")
    ap.add_argument("--device", default="cpu", help="cifar case: train on this device (cuda)")
    ap.add_argument("--compile", action="store_true", help="cifar case: add reslab+compile")
    ap.add_argument(
        "--isa",
        choices=sorted(ISA_LIMITS),
        help="cap torch, oneDNN and MKL at this ISA's code paths in every row "
        "(ONNX Runtime ignores it)",
    )
    args = ap.parse_args()
    if args.isa:
        limit_isa(args.isa)  # the workers inherit it
    if args.serve:
        serve_inference(json.loads(args.serve[2]), args.serve[1])
        return
    if args.worker:
        case, variant, params = args.worker
        print(json.dumps(worker(case, variant, json.loads(params))))
        return

    cases = set(args.cases.split(","))
    results: list[dict] = []
    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("RESLAB_CACHE", str(Path(tmp.name) / "cache"))
    cifar, folder, steps = args.cifar, args.imagefolder, args.steps
    if args.quick:
        from reslab.data.synthetic import make_cifar_archive, make_image_folder

        make_cifar_archive(Path(tmp.name) / "c" / "tiny.tar.gz", 600, 0)
        make_image_folder(Path(tmp.name) / "f", ["a", "b"], 24, (160, 120))
        cifar, folder, steps = str(Path(tmp.name) / "c"), str(Path(tmp.name) / "f"), 2
    cpu = cpu_info()
    print(
        f"reslab benchmark, {cpu['cpu']} ({' '.join(cpu['isa'])}), {os.cpu_count()} "
        f"CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    if args.isa:
        print(
            f"ISA limited to {args.isa} code paths ({', '.join(ISA_LIMITS[args.isa])}); "
            "ONNX Runtime rows are not: it picks kernels from the CPU itself"
        )

    def record(case: str, name: str, params: dict, res: dict) -> dict:
        results.append({"case": case, "variant": name, **params, **res, **cpu})
        return res

    peak = measure("peak", "", {"n": 512 if args.quick else 4096}, malloc=False)["gflops"]
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s")
    record("peak", "matmul", {}, {"gflops": peak})

    if "cifar" in cases:
        for model in ("resnet20",) if args.quick else ("resnet20", "resnet56"):
            p = {
                "model": model,
                "data_dir": cifar,
                "steps": steps,
                "batch": 32 if args.quick else 128,
                "device": args.device,
            }
            variants = ("baseline", "reslab") + (("reslab+compile",) if args.compile else ())
            variants += (
                ("reslab --cuda-graphs", "reslab+cudagraph") if args.device == "cuda" else ()
            )
            # bf16 autocast: 1.5-2x reslab fp32 on CPUs with AMX; on an AVX2-only CPU (or
            # under --isa) 0.10x, ~10 minutes of rows for nothing (docs/benchmarks.md 7b)
            if args.device == "cpu" and usable_isa() & {"amx_bf16", "avx512_bf16"}:
                variants += ("reslab --amp bf16",)
            elif args.device == "cpu":
                print(
                    "(no bf16 rows: this CPU, as torch may use it, has neither AMX nor "
                    "AVX-512 bf16, where bf16 trains ~10x slower than fp32)"
                )
            rows = [
                (v, record("cifar", v, p, measure("cifar", v, p, malloc=v != "baseline")))
                for v in variants
            ]
            side_by_side(
                f"1. CIFAR training end to end, {model}, batch {p['batch']}",
                rows,
                "images_per_s",
                True,
                "img/s",
            )
            for name, res in rows:
                if "images_per_s" in res and args.device == "cpu":
                    frac = res["images_per_s"] * res["train_gflop_per_image"] / peak
                    res["fraction_of_peak"] = frac
                    print(f"  {name:<28} model FLOP/s = {frac:.0%} of the matmul peak")

    if "folder" in cases:
        pairs = args.folder_models.split(",")[: 1 if args.quick else None]
        for model, size in (m.split(":") for m in pairs):
            size = int(size)
            p = {
                "model": model,
                "data_dir": folder,
                "steps": max(2, steps // 3),
                "batch": 8 if args.quick else 32,
                "size": 64 if args.quick else size,
            }
            p["cache"] = str(Path(tmp.name) / f"folder-cache-{model}")  # built fresh, timed
            built = record("folder-cache", "build", p, measure("folder-cache", "", p, malloc=True))
            rows = [
                (v, record("folder", v, p, measure("folder", v, p, malloc=v != "baseline")))
                for v in ("baseline", "reslab", "reslab+cache")
            ]
            side_by_side(
                f"2. ImageFolder training, {model} at {p['size']} px, batch {p['batch']}",
                rows,
                "images_per_s",
                True,
                "img/s",
            )
            print(
                f"  the cache's build (once): {built.get('build_s', float('nan')):.1f} s for "
                f"{built.get('images', 0):,} images, {built.get('gib', 0):.2f} GiB"
            )

    if "inference" in cases:
        # torch.compile takes minutes to warm up: measured in full runs, not --quick.
        variants = (
            ["eager", "reslab", "reslab:fold", "reslab:jit"]
            + ([] if args.quick else ["reslab:compile"])
            + ["onnxruntime"]
        )
        size = 224  # the exported ONNX graph has a fixed 224 px input (dynamic batch)
        # (batch, calls per variant per round, rounds)
        shapes = ((1, 3, 1),) if args.quick else ((1, 10, 6), (32, 2, 5))
        for model in ("resnet18",) if args.quick else ("resnet18", "resnet50"):
            for batch, reps, rounds in shapes:
                p = {"model": model, "batch": batch, "reps": reps, "size": size}
                res = inference_rounds(variants, p, rounds)
                rows = [
                    (v, record("inference", v, {**p, "rounds": rounds}, res[v])) for v in variants
                ]
                side_by_side(
                    f"3. inference {model} {size} px, batch {batch} (median s per batch)",
                    rows,
                    "seconds",
                    False,
                    "s",
                )

    if "memory" in cases:
        p = {"batch": 8, "n": 3} if args.quick else {"batch": 128, "n": 200}
        rows = [
            (v, record("memory", v, p, measure("memory", v, p, malloc=True)))
            for v in ("no-checkpointing", "checkpointing")
        ]
        side_by_side(
            f"4. peak RSS, one ResNet-{6 * p['n'] + 2} training step, batch {p['batch']}",
            rows,
            "peak_rss_mb",
            False,
            "MiB",
        )

    if "tta" in cases and args.tta_runs:
        print("\n5. time to accuracy (validation accuracy against training wall time)")
        for run in args.tta_runs:
            recs = [json.loads(r) for r in (Path(run) / "metrics.jsonl").read_text().splitlines()]
            evals = [r for r in recs if r["kind"] == "eval"]
            cfg = json.loads((Path(run) / "config.json").read_text())
            print(f"  {run} ({cfg['model']}, {cfg['recipe']}):")
            for r in evals:
                print(
                    f"    {r['wall'] / 60:6.1f} min  step {r['step']:>6}  "
                    f"val accuracy {100 - r['top1_error']:.2f}%"
                )
            record("tta", cfg["recipe"], {"run": run}, {"evals": evals})

    if "int8" in cases:
        int8_case.run_case(args.quick, inference_rounds, record)

    if "train-eval" in cases:
        train_eval_case.run_case(
            args.quick,
            folder,
            args.train_eval_models,
            2 if args.quick else args.train_eval_steps,
            8 if args.quick else args.val_images,
            record,
        )

    if args.out:
        with open(args.out, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
