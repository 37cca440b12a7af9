"""Helpers shared by the test modules that train tiny runs and check CLI refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from reslab.cli import main
from reslab.config import make_config

# `reslab train` flags for the same tiny run: 2 steps of a ResNet-8 on tiny_cifar.
TINY = [
    "--model-args",
    '{"n": 1}',
    "--batch-size",
    "32",
    "--val-size",
    "64",
    "--iterations",
    "2",
    "--no-progress",
    "--threads",
    "1",
    "--eval-batch-size",
    "64",
]


def tiny(data: Path, out: Path, **kw):
    """A 4-step ResNet-8 run on tiny_cifar (conftest.py), with every boundary in it."""
    base = dict(
        model="resnet20",
        model_args={"n": 1},
        data_dir=str(data),
        out=str(out),
        batch_size=32,
        val_size=64,
        iterations=4,
        milestones=(),
        log_every=2,
        eval_every=4,
        checkpoint_every=2,
        eval_batch_size=64,
        progress=False,
        threads=1,
    )
    return make_config("cifar-paper", **{**base, **kw})


def cli_error(capsys: pytest.CaptureFixture, argv: list[str], *want: str) -> str:
    """`reslab ARGV` is refused with exit status 2 and one line holding each of `want`."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert all(w in err for w in want), err
    return err


def smoke(experiment: str, data: Path, out: Path) -> list[str]:
    """`reslab reproduce EXPERIMENT --budget smoke` on `data` into `out`; flags follow."""
    return [
        "reproduce",
        experiment,
        "--budget",
        "smoke",
        "--data-dir",
        str(data),
        "--out",
        str(out),
    ]
