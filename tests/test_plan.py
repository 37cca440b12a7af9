"""The run's gate (training/plan.py): every check once, one meta build and one device
choice before the real build, for a new run from the CLI and for a resume."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
import torch

from reslab import config, devices, distributed
from reslab.cli import main
from reslab.config import check_config
from reslab.data.synthetic import make_image_folder
from reslab.models import registry
from reslab.storage.checkpoint import load_resumable
from reslab.training import accelerate, finetune, memory_estimate, plan, schedule
from reslab.training.loop import train

pytestmark = pytest.mark.usefixtures("cache")

TINY = [*helpers.TINY, "--device", "cpu", "--no-compile"]

# Every check a run's start makes, and what picks its device and completes its config.
COUNTED: list[Callable] = [
    check_config,
    config.check_split,
    plan.check_threads,
    plan.check_data_dir,
    plan.check_stages,
    finetune.check_fit,
    memory_estimate.check_memory,
    accelerate.check_cuda_graphs,
    devices.pick_device,
    schedule.resolve_recipe,
    distributed.from_env,
]


def count_calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Wrap each COUNTED function, and registry.build on the meta device, wherever a
    reslab module holds it; return the counter they add to."""
    counts: Counter = Counter()

    def counted(fn: Callable, name: str) -> Callable:
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    def meta_build(*args, **kwargs):
        if torch.empty(()).device.type == "meta":
            counts["meta build"] += 1
        return original_build(*args, **kwargs)

    original_build = registry.build
    wrappers = {id(f): (f.__name__, counted(f, f.__name__)) for f in COUNTED}
    wrappers[id(original_build)] = ("build", meta_build)
    for module in [m for n, m in sys.modules.items() if n.startswith("reslab")]:
        for attr, value in list(vars(module).items()):
            if id(value) in wrappers and wrappers[id(value)][0] == attr:
                monkeypatch.setattr(module, attr, wrappers[id(value)][1])
    return counts


def assert_once(counts: Counter, *, data_dir: bool = True) -> None:
    for name in (
        "check_config",
        "check_split",
        "check_threads",
        "check_stages",
        "check_memory",
        "pick_device",
        "resolve_recipe",
    ):
        assert counts[name] == 1, (name, counts)
    assert counts["check_data_dir"] == int(data_dir), counts
    assert counts["meta build"] <= 1, counts
    assert counts["check_cuda_graphs"] == 0 and counts["check_fit"] == 0, counts


def test_a_new_run_from_the_cli_is_checked_once(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default folder, runs/run, as a user gets it
    counts = count_calls(monkeypatch)
    assert main(["train", "--data-dir", str(tiny_cifar), *TINY]) == 0
    assert_once(counts)
    assert (tmp_path / "runs" / "run" / "summary.json").exists()


def _stopped_run(data: Path, out: Path) -> Path:
    """A tiny 4-step run stopped after step 2: a folder to resume."""
    argv = ["train", "--data-dir", str(data), *TINY, "--iterations", "4", "--stop-after", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_a_resume_is_checked_once(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _stopped_run(tiny_cifar, tmp_path / "r")
    counts = count_calls(monkeypatch)
    assert train(resume=out).status == "finished"
    assert_once(counts)


def test_the_resolved_config_is_planned_once(tiny_cifar: Path, tmp_path: Path) -> None:
    """The recipe's per-model rule (the paper's ResNet-110 warm-up) is in the plan's
    config, and in the run's config.json."""
    from reslab.config import make_config

    cfg = make_config(model="resnet110", data_dir=str(tiny_cifar), device="cpu")
    resolved = plan.plan(cfg)
    assert resolved.cfg.warmup_lr == 0.01 and cfg.warmup_lr is None
    assert resolved.device == torch.device("cpu") and resolved.world.world_size == 1
    assert (resolved.family, resolved.layers) == ("cifar", 110)


def test_threads_far_above_the_cores_are_refused(
    tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "r"
    code = main(
        ["train", "--data-dir", str(tiny_cifar), *TINY, "--threads", "1000", "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.search(r"threads 1000 is more than 4 per core of this machine's \d+", err), err
    assert not out.exists()


def test_resume_refuses_another_network_or_class_count(
    tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before anything loads, naming the setting; the folder stays resumable."""
    out = _stopped_run(tiny_cifar, tmp_path / "r")
    capsys.readouterr()
    before = sorted(p.name for p in out.rglob("*"))
    three = make_image_folder(tmp_path / "three", ["a", "b", "c"], 16, 40)
    for flags, want in (
        (["--model", "resnet32"], "--model 'resnet32' cannot change on --resume"),
        (["--shortcut", "B"], "--shortcut 'B' cannot change on --resume"),
        (["--model-args", '{"n": 2}'], "--model-args {'n': 2} cannot change on --resume"),
        (
            [
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(three),
                "--image-size",
                "32",
                "--val-size",
                "8",
            ],
            "has 3 classes and the run was trained on 10",
        ),
    ):
        code = main(["train", "--resume", str(out), *flags])
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after data's own notes
        assert code == 2 and err.startswith("reslab train: error:") and want in err, (flags, err)
    assert sorted(p.name for p in out.rglob("*")) == before
    state, _ = load_resumable(out)
    assert state["step"] == 2
    assert main(["train", "--resume", str(out)]) == 0
