"""torchrun + DDP on CPU (gloo): 2 processes equal 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reslab.data.synthetic import make_cifar_archive
from reslab.storage.checkpoint import load_checkpoint

# Tiny synthetic batches make BN training chaotic: two single-process runs that differ
# only in memory layout (float rounding) drift apart by ~7e-5 after 4 steps at lr 0.01,
# and by 3e-3 after 6 steps at lr 0.1. The tolerance below is a few times that noise.
ARGS = [
    "--model",
    "resnet20",
    "--model-args",
    '{"n": 1}',
    "--dataset",
    "cifar10",
    "--batch-size",
    "32",
    "--val-size",
    "64",
    "--iterations",
    "4",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--milestones",
    "3",
    "--no-progress",
    "--lr",
    "0.01",
    "--sync-bn",
    "--threads",
    "1",
]
TOL = {"atol": 3e-4, "rtol": 1e-3}


def torchrun(nproc: int, argv: list[str], env: dict, stop_after: int | None = None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "reslab",
        *argv,
    ]
    if stop_after is not None:
        cmd += ["--stop-after", str(stop_after)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ddp")
    make_cifar_archive(root / "data" / "tiny.tar.gz", n_train=256, n_test=0)
    env = {**os.environ, "RESLAB_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    return root, env


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_two_processes_equal_one(setting: tuple[Path, dict]) -> None:
    root, env = setting
    data = ["--data-dir", str(root / "data")]
    torchrun(1, ["train", *ARGS, *data, "--out", str(root / "one")], env)
    torchrun(2, ["train", *ARGS, *data, "--out", str(root / "two")], env)
    one, two = weights(root / "one"), weights(root / "two")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], **TOL, msg=lambda m, k=k: f"{k}: {m}")
    # Only rank 0 writes: one metrics line per step, not two.
    lines = (root / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(r)["kind"] == "train" for r in lines) == 4


def test_resume_with_another_process_count(setting: tuple[Path, dict]) -> None:
    root, env = setting
    data = ["--data-dir", str(root / "data")]
    run = root / "switch"
    torchrun(2, ["train", *ARGS, *data, "--out", str(run)], env, stop_after=2)
    # Continue the same run to the end on a single process.
    torchrun(1, ["train", "--resume", str(run)], env)
    ref = root / "one"
    if not ref.exists():
        torchrun(1, ["train", *ARGS, *data, "--out", str(ref)], env)
    for k, v in weights(ref).items():
        torch.testing.assert_close(weights(run)[k], v, **TOL, msg=lambda m, k=k: f"{k}: {m}")


def test_accumulation_two_processes_equal_one(setting: tuple[Path, dict]) -> None:
    """2 processes x 2 micro-batches of 8 take the step of 1 process x 4 micro-batches of 8:
    batch norm sees the same groups of 8 images (without --sync-bn), the gradients are
    averaged once per step. Parameters agree; BN's running statistics do not (DDP
    broadcasts rank 0's at every forward) and are left out."""
    root, env = setting
    args = [a for a in ARGS if a != "--sync-bn"] + ["--data-dir", str(root / "data")]
    torchrun(1, ["train", *args, "--grad-accum-steps", "4", "--out", str(root / "acc1")], env)
    torchrun(2, ["train", *args, "--grad-accum-steps", "2", "--out", str(root / "acc2")], env)
    one, two = weights(root / "acc1"), weights(root / "acc2")
    for k in one:
        if "running_" not in k and "num_batches" not in k:
            torch.testing.assert_close(two[k], one[k], **TOL, msg=lambda m, k=k: f"{k}: {m}")


def test_no_sync_skips_the_all_reduce(tmp_path: Path) -> None:
    """distributed.no_sync(model, skip=True) leaves DDP's gradients unreduced: one
    all-reduce per accumulated step, in the last micro-batch's backward."""
    import torch.distributed as dist

    from reslab import distributed

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
        calls = []

        def hook(state, bucket):
            calls.append(1)
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, hook)
        for i in range(3):
            with distributed.no_sync(ddp, skip=i < 2):
                ddp(torch.randn(3, 4)).sum().backward()
        assert len(calls) == 1
    finally:
        dist.destroy_process_group()


def test_local_rank_is_read_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's LOCAL_RANK picks the process's GPU and its DistInfo; outside torchrun
    there is none, and a single process is rank 0 of 1."""
    from reslab import distributed

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.local_rank() is None
    assert distributed.from_env().local_rank == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_rank() == 3 and distributed.from_env().local_rank == 3
