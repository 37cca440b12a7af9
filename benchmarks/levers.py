"""Inference levers on one CPU's code paths (issue 24 part 3), each beside reslab's default.

    python benchmarks/levers.py --isa avx2 [--model resnet50] [--out FILE]
    python benchmarks/levers.py --quick         # resnet18, batch 1, one round: does it run

Every variant is a process of its own, timed in interleaved rounds (run.py's
`inference_rounds`), so a ratio compares two figures taken side by side. The levers:

- `jit` against `onednn` (the default): TorchScript's NCHW graph, whose convolutions
  oneDNN runs as its blocked `jit:avx2` kernels, against channels-last, where it picks
  `brg_conv_fwd` (brgemm). `--impls` prints which kernels each really ran.
- `compile`, `compile+cpp`: inductor with freezing (weights folded and prepacked as
  constants), calling its kernels from Python or from C++ (`cpp_wrapper`).
- `@1t`: one thread instead of the machine's cores (no per-op fork/join at batch 1);
  `+active`: `OMP_WAIT_POLICY=ACTIVE` (threads spin between ops instead of sleeping).
  Spinning threads would slow every process beside them (the first run of this script,
  with it in the pool, made the others 1.6-3x slower), so it is timed alone, in fresh
  processes alternating with fresh ones of its reference.
- int8 (`reslab.quantize`; shipped: freezing + cpp_wrapper), `int8-python` (freezing,
  Python wrapper) and `int8-unfrozen` (no freezing: the weights are not prepacked).
- `ort`: ONNX Runtime fp32 on reslab's export, the issue's peer. It ignores the ISA
  caps (its kernels follow CPUID): under `--isa` its row is context, not a ratio target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import int8_case  # benchmarks/: the script's own folder is first on sys.path
import run as bench
import torch

from reslab.provenance import ISA_LIMITS, limit_isa, provenance

BATCH1 = [
    "onednn",
    "onednn@1t",
    "onednn+active",
    "jit",
    "compile",
    "compile+cpp",
    "ort",
    "int8",
    "int8@1t",
    "int8-python",
    "int8-unfrozen",
]
BATCH32 = ["onednn", "jit", "compile+cpp", "ort", "int8"]
ENV = {"+active": {"OMP_WAIT_POLICY": "ACTIVE"}}


def _env_suffix(variant: str) -> str | None:
    """The ENV suffix a variant ends with (its threads spin), or None."""
    return next((k for k in ENV if variant.endswith(k)), None)


def runner(model_name: str, variant: str, batch: int, size: int):
    """A call that classifies one random batch the way `variant` does."""
    import torch._inductor.config as inductor_config

    from reslab import create_model
    from reslab.inference import optimize_for_inference, quantize

    if "@1t" in variant:
        torch.set_num_threads(1)
    base = re.sub(r"(@1t|\+active)$", "", variant)
    model = create_model(model_name).eval()
    x = torch.randn(batch, 3, size, size)
    xc = x.contiguous(memory_format=torch.channels_last)
    if base == "ort":
        return int8_case.runner(model, "onnxruntime", x)
    if base in ("onednn", "jit"):
        fast = optimize_for_inference(model, x[:1], mode=base)
        xin = x if base == "jit" else xc
        call = lambda: fast(xin)  # noqa: E731
    else:  # inductor: fp32 folded net or int8 graph, with these options at compile time
        if base.startswith("int8"):
            net = quantize(model, [int8_case.calibration(size)]).graph
        else:
            net = optimize_for_inference(model, mode="fold")
        compiled = torch.compile(net)
        opts = {"freezing": base != "int8-unfrozen", "cpp_wrapper": base in ("int8", "compile+cpp")}

        def call():
            with inductor_config.patch(**opts):
                return compiled(xc)

    def run() -> None:
        with torch.no_grad():
            call()

    for _ in range(3):
        run()
    return run


def spinning(variants: list[str], params: dict, rounds: int) -> dict[str, dict]:
    """Variants whose threads spin while idle (OMP_WAIT_POLICY=ACTIVE) would slow every
    process beside them, so each is timed with no other variant alive: a fresh process
    per round, alternating with its reference (also fresh) in the same way."""
    out = {}
    for v in variants:
        ref = v[: -len(_env_suffix(v))]
        got: dict[str, list[float]] = {v: [], ref: []}
        for _ in range(rounds):
            for w in (ref, v):
                env = {w: ENV.get(_env_suffix(w), {})}
                r = bench.inference_rounds([w], params, 1, script=__file__, env=env)[w]
                if "seconds" in r:
                    got[w].append(r["seconds"])
        for name, times in ((v, got[v]), (f"{ref} (fresh, beside {v})", got[ref])):
            out[name] = (
                {"seconds": statistics.median(times), "calls": len(times)}
                if times
                else {"error": "no round finished"}
            )
    return out


def conv_impls(model: str, size: int) -> dict[str, dict[str, int]]:
    """Which oneDNN convolution kernels `onednn` and `jit` run (ONEDNN_VERBOSE), by count."""
    out = {}
    for variant in ("onednn", "jit"):
        code = (
            f"import sys; sys.path.insert(0, {str(bench.HERE)!r}); import levers; "
            f"levers.runner({model!r}, {variant!r}, 1, {size})()"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "ONEDNN_VERBOSE": "1"},
        )
        lines = [
            ln.split(",")
            for ln in proc.stdout.splitlines()
            if ln.startswith("onednn_verbose") and ",exec," in ln and "convolution" in ln
        ]
        # onednn_verbose,[time,]primitive,exec,cpu,convolution,IMPL,...
        out[variant] = dict(
            Counter(f[f.index("convolution") + 1] for f in lines if "convolution" in f)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--isa", choices=sorted(ISA_LIMITS), help="cap torch, oneDNN and MKL")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--impls", action="store_true", help="also list the oneDNN conv kernels")
    ap.add_argument("--quick", action="store_true", help="resnet18, batch 1, one round")
    ap.add_argument("--out", help="append the results as JSON lines to this file")
    args = ap.parse_args()
    if args.isa:
        limit_isa(args.isa)  # the variants' processes inherit it
    if args.serve:
        bench.serve_inference(json.loads(args.serve[2]), args.serve[1], build=runner)
        return
    if args.quick:
        args.model, args.rounds, args.batches = "resnet18", 1, "1"
    prov = provenance()
    print(
        f"levers: {args.model} at {args.size} px, {prov.get('hardware')}, torch "
        f"{torch.__version__}, ISA cap {args.isa or 'none'}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    if args.impls:
        print(
            "oneDNN convolution kernels at batch 1:", json.dumps(conv_impls(args.model, args.size))
        )
    for batch in map(int, args.batches.split(",")):
        variants = BATCH1 if batch == 1 else BATCH32
        params = {
            "model": args.model,
            "batch": batch,
            "size": args.size,
            "reps": 10 if batch == 1 else 2,
        }
        alone = [v for v in variants if _env_suffix(v)]
        res = bench.inference_rounds(
            [v for v in variants if v not in alone], params, args.rounds, script=__file__
        )
        res.update(spinning(alone, params, args.rounds))
        print(
            f"\nbatch {batch}: median ms per batch; ratio = the reference's time / this one's "
            "(above 1: faster)"
        )
        for v in [*variants, *(k for k in res if k not in variants)]:
            r = res[v]
            ref = "int8" if v.startswith("int8") else "onednn"
            if suffix := _env_suffix(v):  # against its own fresh reference
                ref = f"{v[: -len(suffix)]} (fresh, beside {v})"
            row = {
                "case": "levers",
                "variant": v,
                "batch": batch,
                "isa_limit": args.isa,
                **params,
                **r,
                "provenance": prov,
            }
            if "seconds" not in r:
                print(f"  {v:15s} failed: {r.get('error')}")
            else:
                vs_ref = (
                    res[ref]["seconds"] / r["seconds"] if "seconds" in res[ref] else float("nan")
                )
                vs_ort = (
                    res["ort"]["seconds"] / r["seconds"]
                    if "seconds" in res["ort"]
                    else float("nan")
                )
                row.update(vs_default=vs_ref, vs_ort_fp32=vs_ort)
                print(
                    f"  {v:15s} {r['seconds'] * 1e3:9.2f} ms   {vs_ref:5.2f}x {ref.split(' ')[0]:6s} "
                    f"{vs_ort:5.2f}x ORT fp32"
                )
            if args.out:
                with Path(args.out).open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
