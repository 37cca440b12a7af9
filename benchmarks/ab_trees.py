"""Two source trees of reslab, or two settings, trained side by side: did a change cost
training speed?

    git worktree add /tmp/old <commit>
    python benchmarks/ab_trees.py --old /tmp/old/src --new src --model resnet20
    python benchmarks/ab_trees.py --old src --new src --old-set channels_last=false --isa avx2

Each round trains the model for 90 steps with each tree in turn (a fresh process with
that tree's `src` first on the path and reslab's malloc tuning), reading images/s of
steps 31-90 from the run's metrics; the rounds alternate so that drift of a shared
machine hits both. `--old-set`/`--new-set KEY=VALUE` (a JSON value) override the
recipe's config on one side; `--isa avx2` caps both at torch's AVX2 code paths
(reslab.provenance.limit_isa). Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CODE = r"""
import json, sys, tempfile
from reslab.config import make_config
from reslab.training.loop import train
out = tempfile.mkdtemp() + "/run"
cfg = make_config("cifar-paper", model=sys.argv[1], data_dir=sys.argv[2], out=out,
                  iterations=90, log_every=30, eval_every=10**6, checkpoint_every=10**6,
                  progress=False, **{"compile": False, **json.loads(sys.argv[3])})
train(cfg)
recs = [json.loads(line) for line in open(out + "/metrics.jsonl") if '"train"' in line]
print(json.dumps([r["images_per_s"] for r in recs]))
"""
MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def config_override(text: str) -> tuple[str, object]:
    """KEY=VALUE (VALUE in JSON: false, 0.1, "nchw") as a (key, value) pair."""
    key, eq, value = text.partition("=")
    try:
        if not (key and eq):
            raise ValueError
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=JSON_VALUE (e.g. channels_last=false)"
        ) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="the baseline tree's src folder")
    ap.add_argument("--new", required=True, help="the changed tree's src folder")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--data-dir", default="/work/data/cifar10-jpeg")
    ap.add_argument("--rounds", type=int, default=3)
    for side in ("old", "new"):
        ap.add_argument(
            f"--{side}-set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            type=config_override,
            help=f"config override for the {side} side (JSON value)",
        )
    ap.add_argument("--isa", help="cap both sides at this ISA's code paths, e.g. avx2")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, not {args.rounds}")
    sets = {side: dict(getattr(args, f"{side}_set")) for side in ("old", "new")}
    if args.isa:
        sys.path.insert(0, args.new)
        from reslab.provenance import limit_isa

        try:
            limit_isa(args.isa)
        except ValueError as e:
            ap.error(str(e))
    results: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for name in ("old", "new"):
            env = {**os.environ, "GLIBC_TUNABLES": MALLOC, "PYTHONPATH": getattr(args, name)}
            proc = subprocess.run(
                [sys.executable, "-c", CODE, args.model, args.data_dir, json.dumps(sets[name])],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                sys.exit(f"{name}: {proc.stderr[-2000:]}")
            ips = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append(statistics.mean(ips[1:]))  # steps 31-90
            print(r, name, [round(v) for v in ips], flush=True)
    for name, values in results.items():
        print(name, [round(v) for v in values], "median", round(statistics.median(values)))


if __name__ == "__main__":
    main()
