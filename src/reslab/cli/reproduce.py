"""`reslab reproduce NAME`, `reslab report RUN_DIR...` and `reslab results-table DIR`."""

from __future__ import annotations

import argparse


def _reproduce(args: argparse.Namespace) -> int:
    from ..reproduce.experiments import run_experiment

    if args.name == "responses":
        from ..reproduce.responses import run_responses

        out = run_responses(
            args.runs or args.out, data_dir=args.data_dir, out=args.out, argv=args.argv
        )
    else:
        out = run_experiment(
            args.name,
            args.budget,
            args.data_dir,
            args.out,
            seeds=args.seeds,
            argv=args.argv,
            progress=not args.no_progress and args.jobs == 1,
            jobs=args.jobs,
            reuse=args.reuse,
            **({"threads": args.threads} if args.threads is not None else {}),
            **(
                {"grad_accum_steps": args.grad_accum_steps}
                if args.grad_accum_steps is not None
                else {}
            ),
        )
    from ..reproduce.report import write_report

    print(f"report: {write_report(out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..reproduce.report import write_report

    for folder in args.folders:
        print(f"report: {write_report(folder)}")
    return 0


def _results_table(args: argparse.Namespace) -> int:
    from ..reproduce.front import results_table, write_readme_table

    if args.readme:
        print(f"results table: {write_readme_table(args.results, args.readme)}")
    else:
        print(results_table(args.results), end="")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run one of the paper's experiments and write a report")
    p.add_argument(
        "name",
        help="degradation (Figure 6, Table 6) | imagenet-degradation (Figure 4, Table 2) | "
        "shortcuts (Table 3, ResNet-34 on Imagenette) | shortcuts-cifar (the same on "
        "ResNet-32) | responses (Figure 7) | very-deep (1202 layers)",
    )
    p.add_argument(
        "--budget",
        default="cpu",
        help="smoke | cpu (sized for 2 CPU cores, resumable: degradation's 20/56-layer nets "
        "and ResNet-110 with 2 seeds, plain-110 with 1, ~6 h in all; the Imagenette experiments ~1.5 h "
        "each on 2 cores) | cpu-plain-degradation "
        "(52 min) | gpu (one GPU: degradation trains Table 6's ResNet-44/56/110, plain-20/56 "
        "at the paper's 64k steps, ~35 min; imagenet-degradation and shortcuts 41 epochs of "
        "Imagenette at 128 px, 2 seeds, <= ~15 and ~10 min: estimates, docs/results/README.md) "
        "| paper (the full schedule, a GPU job); default: cpu",
    )
    p.add_argument("--data-dir", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="experiment folder (resumable)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the budget's)")
    p.add_argument("--runs", help="responses: the degradation experiment folder to read")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads per run, resumed runs too (default: all cores / --jobs)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many runs at once, in separate processes (default: 1)",
    )
    p.add_argument(
        "--grad-accum-steps",
        type=int,
        help="split each run's optimiser step into N micro-batches (the paper budget's batch "
        "of 256 on a machine that cannot hold it: 8 gives 8 x 32, as the paper's 8 GPUs)",
    )
    p.add_argument(
        "--reuse",
        metavar="DIR",
        help="take the finished runs that experiment folder DIR trained with this plan's very "
        "settings (linked, not moved) instead of training them again: Table 3's option A "
        "is Figure 4's ResNet-34 at the cpu budget",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("report", help="regenerate figures and report.md from experiment folders")
    p.add_argument("folders", nargs="+")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "results-table", help="README's results table from docs/results/index.json and the records"
    )
    p.add_argument("results", help="the results folder (docs/results)")
    p.add_argument("--readme", metavar="FILE", help="write the table into FILE's marked block")
    p.set_defaults(func=_results_table)
