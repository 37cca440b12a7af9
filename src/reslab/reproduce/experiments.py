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
from .plans import BUDGETS, EXPERIMENTS, MAX_SEEDS, run_name
from .reuse import link_runs, matching_runs
from .views import score_views


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
