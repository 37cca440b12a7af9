"""Nothing a user made is lost: run folders are locked and never reused, writes never
replace special files, and a killed process's lock does not block a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.config import make_config
from reslab.storage.checkpoint import atomic_write
from reslab.storage.runlock import FolderInUse, FolderLock, RunExists, fresh_run_dir
from reslab.training.loop import train

pytestmark = pytest.mark.usefixtures("cache")


def tiny(data: Path, out: Path, **kw):
    base = dict(
        model="resnet20", model_args={"n": 1}, data_dir=str(data), out=str(out), batch_size=32,
        val_size=64, iterations=4, milestones=(), log_every=2, eval_every=4,
        checkpoint_every=2, eval_batch_size=64, progress=False, threads=1,
    )  # fmt: skip
    return make_config("cifar-paper", **{**base, **kw})


def steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(r)["step"] for r in lines if '"train"' in r]


def test_a_new_run_refuses_a_folder_holding_a_run(tiny_cifar: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunExists, match="already holds a run.*--resume.*--overwrite"):
        train(tiny(tiny_cifar, run, seed=1))
    assert (run / "metrics.jsonl").read_text() == before  # untouched
    train(tiny(tiny_cifar, run, seed=1), overwrite=True)
    assert steps(run) == [2, 4]  # replaced, not mixed with the first run
    assert json.loads((run / "config.json").read_text())["seed"] == 1


def test_cli_default_out_picks_a_fresh_folder(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data-dir", str(tiny_cifar), "--model-args", '{"n": 1}', "--batch-size",
            "32", "--val-size", "64", "--iterations", "2", "--no-progress", "--threads", "1",
            "--eval-batch-size", "64"]  # fmt: skip
    assert main(argv) == 0 and main(argv) == 0
    assert steps(tmp_path / "runs" / "run") == [2] and steps(tmp_path / "runs" / "run-2") == [2]
    assert fresh_run_dir(tmp_path / "runs" / "run") == tmp_path / "runs" / "run-3"
    # An explicit --out that holds a run is refused with one line and status 2.
    assert main([*argv, "--out", "runs/run"]) == 2


def test_locked_folder_names_the_holder(tiny_cifar: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with FolderLock(run):
        with pytest.raises(
            FolderInUse, match=f"in use by another reslab process \\(pid {os.getpid()}\\)"
        ):
            train(tiny(tiny_cifar, run))
    assert not (run / "config.json").exists()


def test_a_killed_holders_lock_does_not_block_resume(tiny_cifar: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run), stop_after=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from reslab.storage.runlock import FolderLock;"
         f"FolderLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderInUse):
        train(resume=run)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert train(resume=run).status == "finished"  # the .lock file is still there; no matter
    assert steps(run) == [2, 4]


def test_a_bad_run_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="unknown model"):
        train(make_config("cifar-paper", model="resnet21", out=str(out)))
    with pytest.raises(ValueError):
        train(make_config("cifar-paper", data_dir=str(tmp_path / "no-data"), out=str(out)))
    assert not out.exists()


@pytest.mark.parametrize("target", ["/dev/null", "folder", "link"])
def test_atomic_writes_replace_only_regular_files(tmp_path: Path, target: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "real").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    path = Path(target) if target.startswith("/") else tmp_path / target
    kind = os.lstat(path).st_mode
    with pytest.raises(ValueError, match="not a regular file|is a folder|symbolic link"):
        atomic_write(path, b"data")
    assert os.lstat(path).st_mode == kind and (tmp_path / "real").read_text() == "keep"


def test_out_that_is_a_file_or_empty(tiny_cifar: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    for out, why in ((tmp_path / "file", "is a file, not a folder"), ("", "is empty")):
        with pytest.raises(ValueError, match=why):
            train(tiny(tiny_cifar, out))
    assert (tmp_path / "file").read_text() == "mine"


def test_reproduce_jobs_train_each_run_once(tiny_cifar: Path, tmp_path: Path) -> None:
    from reslab.reproduce.experiments import run_experiment

    out = tmp_path / "exp"
    run_experiment("shortcuts", "smoke", str(tiny_cifar), out, jobs=2, progress=False)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["resnet32-A-s0", "resnet32-B-s0", "resnet32-C-s0"]
    for name in runs:  # every step once: no run trained by two jobs
        assert steps(out / "runs" / name) == [1, 2, 3, 4]
    with FolderLock(out), pytest.raises(FolderInUse):
        run_experiment("shortcuts", "smoke", str(tiny_cifar), out)


def test_disk_full_keeps_the_previous_file(tmp_path: Path) -> None:
    import errno

    path = tmp_path / "last.pt"
    path.write_bytes(b"good checkpoint")

    def writer(f) -> None:
        f.write(b"half of a new one")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        OSError, match="disk full while writing .*last.pt; the previous file is kept"
    ):
        atomic_write(path, writer)
    assert path.read_bytes() == b"good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_init_from_another_depth_says_what_it_skipped(tmp_path: Path, capsys) -> None:
    import torch

    from reslab import create_model
    from reslab.training.finetune import init_from

    torch.save(create_model("resnet56").state_dict(), tmp_path / "r56.pt")
    r20 = create_model("resnet20")
    with pytest.warns(UserWarning, match=r"216 tensors of the file are not in resnet20"):
        init_from(r20, str(tmp_path / "r56.pt"))
    assert "init: 116 of resnet20's 116 tensors" in capsys.readouterr().out
    torch.save(create_model("resnet18").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="weights do not fit resnet20"):
        init_from(create_model("resnet20"), str(tmp_path / "r18.pt"))
