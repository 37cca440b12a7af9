"""What torch.compile gains on a CIFAR net's training step, and what its first compile costs.

    python benchmarks/compile_gain.py [--models plain20,resnet32,plain56,resnet110] [--pairs 2]
                                      [--isa avx2]

The numbers behind `reslab train`'s compile=None ("auto") rule. For each model it times
the training step (batch 128 of 32x32 random images, channels-last, SGD, reslab's
malloc tuning) eager and compiled, each in a fresh process, alternating eager, compile,
eager, compile... so the machine's drift hits both alike. One inductor cache serves the
whole invocation: the first compiled process pays the cold compile, later ones load
the cache. Prints one JSON line per process and a ratio per eager/compile pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def measure(name: str, compiled: bool, steps: int, batch: int) -> dict:
    from synthetic_step import cifar_step

    from reslab.provenance import cpu

    step = cifar_step(name, batch, compiled)
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    rate = batch * steps / (time.perf_counter() - start)
    mode = "compile" if compiled else "eager"
    return {"model": name, "mode": mode, "first_step_s": first, "images_per_s": rate, **cpu()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="plain20,resnet32,plain56,resnet110")
    ap.add_argument("--pairs", type=int, default=2, help="eager/compile pairs per model")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=8.0, help="rough timed seconds per process")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "MODE", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--isa", help="cap torch at this ISA's code paths (reslab.provenance.limit_isa)"
    )
    args = ap.parse_args()
    if args.worker:
        name, mode, steps = args.worker
        print(json.dumps(measure(name, mode == "compile", int(steps), args.batch)))
        return
    if args.isa:
        from reslab.provenance import limit_isa

        try:
            limit_isa(args.isa)
        except ValueError as e:
            ap.error(str(e))
        print(f"ISA limited to {args.isa} code paths", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, GLIBC_TUNABLES=MALLOC, TORCHINDUCTOR_CACHE_DIR=cache)

        def worker(name: str, mode: str, steps: int) -> dict:
            cmd = [sys.executable, __file__, "--batch", str(args.batch), "--worker", name, mode]
            proc = subprocess.run([*cmd, str(steps)], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name} {mode} failed:\n{proc.stderr[-2000:]}")
            return json.loads(proc.stdout.strip().splitlines()[-1])

        for name in args.models.split(","):
            sizing = worker(name, "eager", 2)  # how many steps make about --seconds
            steps = max(2, round(args.seconds * sizing["images_per_s"] / args.batch))
            for _ in range(args.pairs):
                row = {mode: worker(name, mode, steps) for mode in ("eager", "compile")}
                for mode in ("eager", "compile"):
                    print(json.dumps(row[mode]), flush=True)
                ratio = row["compile"]["images_per_s"] / row["eager"]["images_per_s"]
                print(f"  {name}: compile / eager = {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
