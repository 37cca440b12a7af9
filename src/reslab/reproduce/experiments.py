"""The paper's experiments as named, budgeted, resumable collections of training runs.

    reslab reproduce degradation --budget cpu --data-dir DIR --out OUT

writes OUT/experiment.json (what was run: command, commit, hardware, data, seeds), OUT/runs/
<model>[-<shortcut>]-s<seed>/ (ordinary run folders) and OUT/report.md with figures. Finished
runs are skipped and interrupted ones resumed: an experiment outlives a session.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import make_config
from ..data.workers import die_with_parent
from ..devices import GIB, MIB, available
from ..errors import ReslabError
from ..provenance import provenance
from ..storage.files import write_json
from ..storage.runlock import FolderInUse, FolderLock
from ..training.loop import train
from ..training.plan import check_run
from .reuse import link_runs, matching_runs
from .views import score_views


@dataclass(frozen=True)
class Budget:
    """How much of the paper's schedule to run. `scale` shrinks every step count."""

    scale: float
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: int = 1
    note: str = ""


# Budgets per experiment family ("cifar" runs the cifar-paper recipe, "imagenet" the
# imagenet-paper one at reduced resolution on CPU).
BUDGETS: dict[str, dict[str, Budget]] = {
    "cifar": {
        "smoke": Budget(
            1 / 16_000,
            {
                "limit": 192,
                "val_size": 64,
                "batch_size": 32,
                "eval_batch_size": 64,
                "log_every": 1,
                "eval_every": 2,
                "checkpoint_every": 4,
            },
            note="4 steps on tiny data: for tests",
        ),  # fmt: skip
        # Both halves of Figure 6 on a laptop: plain nets get worse with depth, residual
        # nets better. 2,000 steps of batch 128 (5.7 epochs of 45k), 2 seeds. Departure
        # from the paper, for a budget 32x shorter: the lr (0.1, batch 128, as the paper)
        # warms up linearly over the first 200 steps and then decays linearly to 0
        # ("budgeted training", Li et al. 2020) instead of /10 at 50% and 75%. Without
        # the warm-up the 56-layer nets spend ~100 of the steps at chance
        # (docs/results/README.md, "Why deep ResNets started slowly").
        "cpu": Budget(
            1.0,
            {
                "iterations": 2_000,
                "milestones": (),
                "schedule": "onecycle",
                "warmup_iters": 200,
                "log_every": 25,
                "eval_every": 200,
                "checkpoint_every": 200,
            },
            seeds=2,
            note="2,000 steps (1/32 of the paper's 64k), lr warm-up over 200 steps then "
            "linear decay to 0, 2 seeds",
        ),  # fmt: skip
        # The first CPU budget, kept because it is quick and shows the degradation of
        # plain nets at all four depths: 1000 steps (2.8 epochs), lr /10 at 500 and 750,
        # 8 networks in ~52 minutes. Too short (and without a warm-up) for the deeper
        # residual nets to overtake the shallower ones.
        "cpu-plain-degradation": Budget(
            1 / 64,
            {"log_every": 25 * 64, "eval_every": 125 * 64, "checkpoint_every": 125 * 64},
            note="1,000 of the paper's 64k iterations (1/64), milestones 500/750: shows "
            "plain nets degrading, not yet deeper residual nets winning",
        ),  # fmt: skip
        "paper": Budget(1.0, {}, seeds=1, note="the paper's full 64k-iteration schedule"),
        # The paper's schedule on one GPU, as cifar10-paper:resnet20/32 were trained
        # (docs/results/table6-paper): 64k steps of batch 128, lr 0.1 /10 at 32k and 48k,
        # ResNet-110's lr-0.01 warm-up, seed 0. Departures, for speed only: bf16 autocast
        # and CUDA graphs (both learn as fp32 eager does: docs/benchmarks.md). Estimated,
        # from ResNet-32's measured 3.6 min alone on an H200 scaled by depth (ResNet-44's
        # partial chunk ran at that rate): ~5, 6.3 and 12.4 min for ResNet-44/56/110.
        "gpu": Budget(
            1.0,
            {"amp": "bf16", "cuda_graphs": True},
            note="the paper's 64k iterations of batch 128 (lr 0.1, /10 at 32k and 48k; "
            "ResNet-110 warmed up at 0.01), bf16 autocast and CUDA graphs on one GPU, seed 0",
        ),  # fmt: skip
    },
    "imagenet": {
        "smoke": Budget(
            1 / 150_000,
            {
                "limit": 96,
                "val_size": 32,
                "batch_size": 16,
                "eval_batch_size": 16,
                "image_size": 64,
                "log_every": 1,
                "eval_every": 2,
                "checkpoint_every": 4,
                "iterations": 600_000,
            },
            note="4 steps on tiny data: for tests",
        ),  # fmt: skip
        # Figure 4's findings (and Table 3's options on the same net) in one session: 4 nets x
        # 2 seeds. Timed on 2 quiet Zen 4 cores (2026-12-03, seed 1): plain-18 7.8, ResNet-18
        # 7.5, plain-34 14.0, ResNet-34 14.3 min, evaluations and 10-crop included: ~1 h 27 min
        # for both seeds. Departures, for a budget ~250x shorter than the paper's (64k images,
        # 7.5 epochs of Imagenette):
        # - 64 px crops, the paper's scale augmentation scaled with them (shorter side in
        #   [73, 137] where the paper has [256, 480] for 224; the 7x7 stem and max-pool are
        #   kept, so the last stage works at 2x2);
        # - batch 64 at lr 0.025: the paper's 0.1 per 256 images, linearly scaled (at 0.1 the
        #   residual nets sat at chance: docs/results/README.md);
        # - the rate warms up over 50 steps and decays linearly to 0 (as the CIFAR cpu budget)
        #   instead of /10 on plateaus, which a 1,000-step run never reaches;
        # - 1,000 held-out images as validation, scored every 100 steps, in 10 crops at the end.
        "cpu": Budget(
            1.0,
            {
                "iterations": 1_000,
                "image_size": 64,
                "batch_size": 64,
                "val_size": 1000,
                "schedule": "onecycle",
                "milestones": (),
                "warmup_iters": 50,
                "log_every": 10,
                "eval_every": 100,
                "checkpoint_every": 100,
            },
            seeds=2,
            note="1,000 steps of batch 64 at 64 px (7.5 epochs of Imagenette), lr 0.025 "
            "(0.1 per 256 images) warmed up over 50 steps then decayed linearly to 0, 2 seeds",
        ),  # fmt: skip
        "paper": Budget(1.0, {}, note="the paper's schedule: batch 256, 224 px, up to 60e4 steps"),
        # Figure 4, Table 2 and Table 3 at a budget that can tell (issue 36): the paper's batch
        # and rate on one GPU, ~41 epochs of Imagenette, 2 seeds. Departures from section 3.4:
        # - 128 px crops (the scale augmentation scaled with them: shorter side in [146, 274]);
        # - 1,200 steps of batch 256 (41 epochs of 7,469 images, the paper's ~120 of 1.28M),
        #   lr 0.1 divided by 10 at fixed steps, 600 and 900 (50% and 75%, as the paper's
        #   CIFAR schedule), not on plateaus: a plateau needs evaluations a short run lacks;
        # - 2,000 of the 9,469 training images held out as validation (a tree with its own
        #   val/ folder is scored on that instead), every 100 steps, in 10 crops at the end;
        # - bf16 autocast. The decoded training split is held on the GPU (decoded_loader.py).
        # Time, an estimate (no GPU has run it yet): 3 x 2 x 0.59 / 1.19 GMAC x 307,200 images
        # = 1.08 / 2.19 PFLOP a run for 18 / 34 layers; at ResNet-32's measured 16.4 TFLOP/s
        # on an H200 (39,600 images/s, docs/results/table6-paper), a floor for these wider
        # convs, ~1.1 / 2.2 min a run alone: Figure 4's 8 runs <= ~15 min, Table 3's B and C
        # (4 runs) <= ~10 min, evaluations included.
        "gpu": Budget(
            1.0,
            {
                "iterations": 1_200,
                "schedule": "step",
                "milestones": (600, 900),
                "image_size": 128,
                "batch_size": 256,
                "val_size": 2000,
                "amp": "bf16",
                "log_every": 10,
                "eval_every": 100,
                "checkpoint_every": 100,
            },
            seeds=2,
            note="1,200 steps of batch 256 at 128 px (41 epochs of Imagenette's 7,469 "
            "training images; the paper ~120 of ImageNet at 224 px), lr 0.1 /10 at 600 and "
            "900 (fixed steps, not plateaus), 2,000 held-out images, bf16, 2 seeds",
        ),  # fmt: skip
    },
}


@dataclass(frozen=True)
class Experiment:
    name: str
    family: str  # which BUDGETS table
    recipe: str
    dataset: str
    runs: tuple[tuple[str, str | None], ...]  # (model, shortcut override)
    figure: str  # what the paper shows: for the report
    extra_paper_runs: tuple[tuple[str, str | None], ...] = ()  # only at the paper budget
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # budget -> overrides
    # budget -> the runs it trains instead of `runs` (a CPU budget affords fewer depths)
    budget_runs: dict[str, tuple[tuple[str, str | None], ...]] = field(default_factory=dict)
    # The final network's validation error in these views besides the centre crop, once a
    # run has finished (runs/NAME/views.json): Table 2 and 3 give 10-crop errors.
    views: tuple[str, ...] = ()
    # budget -> {model: seeds}: runs too long for every seed of the budget (the 110-layer
    # nets take ~50 minutes each on 2 CPU cores) train only their first seeds.
    seed_caps: dict[str, dict[str, int]] = field(default_factory=dict)

    def planned(self, budget: str) -> list[tuple[str, str | None]]:
        runs = list(self.budget_runs.get(budget, self.runs))
        return runs + (list(self.extra_paper_runs) if budget == "paper" else [])

    def plan(self, budget: str, seeds: int) -> list[tuple[str, str | None, int]]:
        """(model, shortcut, seed) in training order: every run of seed 0 first."""
        caps = self.seed_caps.get(budget, {})
        return [(m, sc, seed) for seed in range(seeds) for m, sc in self.planned(budget)
                if seed < caps.get(m, seeds)]  # fmt: skip


EXPERIMENTS: dict[str, Experiment] = {
    "degradation": Experiment(
        "degradation", "cifar", "cifar-paper", "cifar10",
        tuple((f"{kind}{d}", None) for kind in ("plain", "resnet") for d in (20, 32, 44, 56)),
        "Figure 6 / Table 6", extra_paper_runs=(("plain110", None), ("resnet110", None)),
        # The shallowest and deepest of Table 6 and ResNet-110 (with the paper's lr-0.01
        # warm-up) with 2 seeds fit the CPU budget; plain-110, which fails at chance, once.
        budget_runs={"cpu": (*((f"{kind}{d}", None) for kind in ("plain", "resnet")
                                for d in (20, 56)), ("resnet110", None), ("plain110", None)),
                     # Table 6's remainder at the paper's schedule (ResNet-20/32 ran as
                     # docs/results/table6-paper), then Figure 6's plain nets at 20 and 56.
                     "gpu": (("resnet44", None), ("resnet56", None), ("resnet110", None),
                             ("plain20", None), ("plain56", None))},
        seed_caps={"cpu": {"plain110": 1}},
    ),
    # Figure 4 and Table 2 use option A for the residual nets (section 4.1: "identity
    # mapping for all shortcuts and zero-padding for increasing dimensions").
    "imagenet-degradation": Experiment(
        "imagenet-degradation", "imagenet", "imagenet-paper", "imagefolder",
        (("plain18", None), ("plain34", None), ("resnet18", "A"), ("resnet34", "A")),
        "Figure 4 / Table 2", views=("ten-crop",),
        # The residual nets first: Table 3 reuses ResNet-34 (A), and a GPU lease may end.
        budget_runs={"gpu": (("resnet18", "A"), ("resnet34", "A"), ("plain18", None),
                             ("plain34", None))},
    ),
    # Table 3 on the paper's own network: ImageNet ResNet-34, at the same budget as Figure 4.
    "shortcuts": Experiment(
        "shortcuts", "imagenet", "imagenet-paper", "imagefolder",
        (("resnet34", "A"), ("resnet34", "B"), ("resnet34", "C")),
        "Table 3 (options A/B/C, ResNet-34 on Imagenette)", views=("ten-crop",),
    ),
    "shortcuts-cifar": Experiment(
        "shortcuts-cifar", "cifar", "cifar-paper", "cifar10",
        (("resnet32", "A"), ("resnet32", "B"), ("resnet32", "C")),
        "Table 3 (options A/B/C; a 32-layer CIFAR net here, ResNet-34 in the paper)",
        views=("ten-crop",),
    ),
    "very-deep": Experiment(
        "very-deep", "cifar", "cifar-paper", "cifar10", (("resnet1202", None),),
        "Section 4.2 (1202 layers)",
        # Activation checkpointing: recompute each block in backward, so memory grows with
        # the square root of depth, not depth. One ResNet-1202 step at batch 128 costs
        # ~17 GFLOP per image on a CPU: the cpu budget shows feasibility, not accuracy.
        settings={
            "smoke": {"batch_size": 8, "limit": 48, "val_size": 16, "eval_batch_size": 16,
                      "model_args": {"grad_checkpointing": True}, "eval_every": 10**9},
            "cpu": {"scale": 1.0, "iterations": 60, "milestones": (), "val_size": 1000,
                    "schedule": "step", "warmup_iters": 0, "seeds": 1,
                    "eval_every": 60, "log_every": 5, "checkpoint_every": 20,
                    "model_args": {"grad_checkpointing": True},
                    "note": "60 steps of batch 128 at lr 0.01 (the paper's 110-layer warm-up), "
                    "activation checkpointing, 1 seed: cost and stability, not accuracy"},
            "paper": {"model_args": {"grad_checkpointing": True}},
            # CUDA graphs are not known to capture activation checkpointing: eager here.
            "gpu": {"model_args": {"grad_checkpointing": True}, "cuda_graphs": False},
        },
    ),
}  # fmt: skip
# "responses" (Figure 7) reads the degradation runs' checkpoints: see responses.py.


MAX_SEEDS = 100


def run_name(model: str, shortcut: str | None, seed: int) -> str:
    return f"{model}{'-' + shortcut if shortcut else ''}-s{seed}"


def run_experiment(
    name: str,
    budget: str,
    data_dir: str,
    out: str | Path,
    *,
    seeds: int | None = None,
    argv: list[str] | None = None,
    progress: bool = True,
    jobs: int = 1,
    reuse: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Train every run of an experiment (skipping finished ones); returns OUT.

    `jobs` > 1 trains that many runs at once, in separate processes that take the next
    run nobody holds (each run folder is locked while trained): small CIFAR nets leave
    most of a GPU idle. On a CPU the cores are shared out between the jobs.
    """
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; choose one of {', '.join([*EXPERIMENTS, 'responses'])}"
        )
    exp = EXPERIMENTS[name]
    budgets = BUDGETS[exp.family]
    if budget not in budgets:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(budgets)}")
    for flag, value in (
        ("--jobs", jobs),
        ("--seeds", seeds),
        ("--threads", overrides.get("threads")),
    ):
        if value is not None and not value >= 1:  # 0 would fall back to a default silently
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if seeds is not None and seeds > MAX_SEEDS:  # the plan is a list of every run
        raise ValueError(f"--seeds {seeds}: at most {MAX_SEEDS} seeds")
    b = budgets[budget]
    exp_settings = dict(exp.settings.get(budget, {}))
    seeds = seeds or exp_settings.pop("seeds", None) or b.seeds
    note = exp_settings.pop("note", b.note)  # an experiment's own budget says what it runs
    jobs = _workers(jobs, len(exp.plan(budget, seeds)))
    settings = {"scale": b.scale, **b.overrides, **exp_settings, **overrides}
    for m, sc in exp.planned(budget):  # bad settings, a run that cannot fit: refused here
        check_run(make_config(exp.recipe, dataset=exp.dataset, model=m, shortcut=sc, **settings))
    out = Path(out)
    plan = exp.plan(budget, seeds)
    if reuse:  # finished runs of another folder, where they are this plan's own
        reused = matching_runs(
            reuse,
            out,
            {
                run_name(*r): run_config(
                    exp.recipe,
                    exp.dataset,
                    str(data_dir),
                    out / "runs" / run_name(*r),
                    r,
                    settings,
                    progress,
                ).to_dict()
                for r in plan
            },
        )
    with FolderLock(out):  # one `reproduce` per experiment folder
        meta_path = out / "experiment.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update(
            {
                "experiment": name,
                "budget": budget,
                "budget_note": note,
                "seeds": seeds,
                "figure": exp.figure,
                "jobs": jobs,
                "provenance": provenance(argv if argv is not None else sys.argv[1:], data_dir),
            }
        )
        meta.setdefault("started", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        write_json(meta_path, meta)
        if reuse:
            meta.setdefault("reused", {}).update(link_runs(reuse, out, reused))
            write_json(meta_path, meta)  # a run linked in is on record before any training
        job = (name, budget, exp.recipe, exp.dataset, str(data_dir), str(out), plan, settings)
        t0 = time.time()
        invocation = {
            **{k: meta["provenance"].get(k) for k in ("command", "commit", "hardware", "isa")},
            "jobs": jobs,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        meta.setdefault("invocations", []).append(invocation)
        try:
            _run_plan(job, jobs, overrides, settings, progress)
        finally:  # an interrupted invocation's time counts too
            invocation["wall_s"] = time.time() - t0
            meta["wall_s"] = meta.get("wall_s", 0) + invocation["wall_s"]
            write_json(meta_path, meta)
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        write_json(meta_path, meta)
    return out


# What one training process holds at least: the interpreter and torch (~450 MiB, memory.py's
# BASE), a CIFAR net's data, weights and batches: 845 MiB measured for ResNet-20 (peak RSS).
JOB_MEMORY = 1 << 30


def _workers(jobs: int, runs: int) -> int:
    """--jobs capped at the runs there are; more than the memory holds is refused."""
    jobs = min(jobs, max(runs, 1))
    limit, where = available()
    if jobs > 1 and jobs * JOB_MEMORY > limit:
        raise ValueError(
            f"--jobs {jobs}: each job is a process of about {JOB_MEMORY // MIB} MiB "
            f"and {where} gives {limit / GIB:.1f} GiB; this machine holds at most "
            f"{max(1, limit // JOB_MEMORY)} at once"
        )
    return jobs


def _run_plan(
    job: tuple, jobs: int, overrides: dict[str, Any], settings: dict[str, Any], progress: bool
) -> None:
    """The plan in this process, or in `jobs` processes sharing it through the run locks."""
    if jobs == 1:
        _train_runs(*job, progress=progress)
        return
    if "threads" not in overrides:  # share the cores out (`settings` is the one in `job`)
        settings["threads"] = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    # The parent's warning display goes too: the CLI's one-line `reslab: warning: ...`.
    workers = [ctx.Process(target=_job, args=(warnings.showwarning, *job)) for _ in range(jobs)]
    for w in workers:
        w.start()
    # Ctrl-C or a SIGTERM (a time limit's `timeout`, a scheduler) is passed on to the jobs,
    # which save their checkpoints, and waited for: the invocation's wall time is recorded
    # and every job's folder is complete by the time this process ends.
    main_thread = threading.current_thread() is threading.main_thread()
    held = {
        sig: signal.signal(sig, _interrupt)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if main_thread
    }
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:  # the jobs got it too: let them save their checkpoints
        for w in workers:
            if w.is_alive():
                w.terminate()  # SIGTERM: a job training saves and stops; one starting ends
        for w in workers:
            w.join()
        raise
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise ReslabError(
            f"{len(failed)} of {jobs} jobs failed (exit codes {failed}); "
            "run the same command again to resume"
        )


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _job(show: Callable[..., None], *job: Any) -> None:
    """A spawned job: the parent's way of showing warnings, then its share of the plan."""
    warnings.showwarning = show
    # `reproduce` killed with -9: save, stop, never go on alone
    die_with_parent(signal.SIGTERM, multiprocessing.parent_process().pid)
    try:
        _train_runs(*job, progress=False)
    except KeyboardInterrupt:  # stopped with its checkpoint saved: no traceback
        sys.exit(130)


def run_config(
    recipe: str,
    dataset: str,
    data_dir: str,
    run_dir: Path,
    run: tuple[str, str | None, int],
    settings: dict[str, Any],
    progress: bool,
):
    model, shortcut, seed = run
    cfg = make_config(
        recipe,
        model=model,
        shortcut=shortcut,
        dataset=dataset,
        data_dir=data_dir,
        out=str(run_dir),
        seed=seed,
        progress=progress,
        **settings,
    )
    for key in ("log_every", "eval_every", "checkpoint_every"):  # scaled budgets: whole steps
        setattr(cfg, key, max(1, round(getattr(cfg, key))))
    return cfg


def _train_runs(
    name: str,
    budget: str,
    recipe: str,
    dataset: str,
    data_dir: str,
    out: str,
    plan: list[tuple[str, str | None, int]],
    settings: dict[str, Any],
    progress: bool = True,
) -> None:
    """Train each planned run that is not finished and not held by another process."""
    for model, shortcut, seed in plan:
        run_dir = Path(out) / "runs" / run_name(model, shortcut, seed)
        summary = run_dir / "summary.json"
        if summary.exists() and json.loads(summary.read_text()).get("status") == "finished":
            score_views(run_dir, EXPERIMENTS[name].views, data_dir)
            continue
        try:
            if (run_dir / "checkpoints" / "last.pt").exists():
                print(f"[{name}/{budget}] resuming {run_dir.name}", flush=True)
                # The run's own config, but this invocation's share of the cores and its
                # data folder (a run resumed on another machine finds its data elsewhere).
                system = {k: settings[k] for k in ("threads",) if k in settings}
                result = train(resume=run_dir, progress=progress, data_dir=data_dir, **system)
                if result.status == "interrupted":  # Ctrl-C stops the experiment, not one run
                    raise KeyboardInterrupt
                score_views(run_dir, EXPERIMENTS[name].views, data_dir)
                continue
            cfg = run_config(
                recipe, dataset, data_dir, run_dir, (model, shortcut, seed), settings, progress
            )
            print(f"[{name}/{budget}] training {run_dir.name}", flush=True)
            # A folder without last.pt holds at most a run killed before its first
            # checkpoint: nothing to resume, so it starts again.
            if train(cfg, overwrite=True).status == "interrupted":
                raise KeyboardInterrupt
            score_views(run_dir, EXPERIMENTS[name].views, data_dir)
        except FolderInUse:
            continue  # another job trains it
