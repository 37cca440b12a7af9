"""`reslab train`: the main job."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config_flags import EXAMPLES, add_config_flags, config_overrides


def _train(args: argparse.Namespace) -> int:
    from ..config import load_config, merge_config
    from ..training.loop import train

    overrides = config_overrides(args)
    if args.resume and args.config:
        raise ValueError("--config starts a new run; --resume continues one with its own config")
    if args.resume:
        result = train(resume=args.resume, stop_after=args.stop_after, **overrides)
    else:
        if args.config:  # recipe < file < flags
            cfg = load_config(args.config, args.recipe, **overrides)
        else:
            cfg = merge_config(args.recipe or "cifar-paper", overrides)  # checked by train()
        if args.out is None:  # the default folder: never reuse one that holds a run
            result = _train_in_a_fresh_folder(cfg, args)
        else:
            result = train(cfg, stop_after=args.stop_after, overwrite=args.overwrite)
    ev = result.summary.get("final_eval")
    if ev and (result.run_dir / "summary.json").exists():
        print(
            f"{result.status} at step {result.step}: {ev['split']} top-1 error "
            f"{ev['top1_error']:.2f}%, top-5 {ev['top5_error']:.2f}% -> {result.run_dir}"
        )
    elif result.status == "finished":  # --val-size 0 and no test split
        print(
            f"{result.status} at step {result.step} (no held-out images to evaluate "
            f"on) -> {result.run_dir}"
        )
    if result.status == "interrupted":  # the shell's convention: 128 + the signal's number
        return 143 if result.summary.get("signal") == "SIGTERM" else 130
    return 0


def _train_in_a_fresh_folder(cfg, args: argparse.Namespace):
    """runs/run, runs/run-2, ...: the first that holds no run and that no other
    `reslab train` claims first (two started at the same moment take two folders)."""
    from ..storage.runlock import FolderInUse, RunExists, fresh_run_dir
    from ..training.loop import train

    base, taken = Path(cfg.out), set()
    while True:
        cfg.out = str(fresh_run_dir(base, frozenset(taken)))
        try:
            return train(
                cfg,
                stop_after=args.stop_after,
                overwrite=args.overwrite,
                on_start=lambda run_dir: print(f"run folder: {run_dir}"),
            )
        except (FolderInUse, RunExists):
            taken.add(Path(cfg.out))


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network (the main job)",
        description="Train a network. A recipe sets the defaults (shown below for "
        "cifar-paper); every flag overrides one setting.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = p.add_argument_group("config file, resume and overwrite")
    run.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="start from the settings in this JSON file (a run's config.json, or a few "
        "fields); the recipe's defaults under it, flags over it",
    )
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder exactly")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out holds (default: refuse; without --out a fresh "
        "runs/run-N is picked)",
    )
    run.add_argument(
        "--stop-after",
        type=int,
        metavar="STEP",
        help="save a checkpoint and stop at this step (resume later with --resume)",
    )
    add_config_flags(p)
    p.set_defaults(func=_train)
