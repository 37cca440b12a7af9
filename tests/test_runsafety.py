"""Nothing a user made is lost: run folders are locked and never reused, writes never
replace special files, and a killed process's lock does not block a resume."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY, cli_error, tiny

from reslab.cli import main
from reslab.config import make_config
from reslab.storage.checkpoint import atomic_write
from reslab.storage.runlock import FolderInUse, FolderLock, RunExists, fresh_run_dir
from reslab.training.loop import train

pytestmark = pytest.mark.usefixtures("cache")


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
    argv = ["train", "--data-dir", str(tiny_cifar), *TINY]
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
        [
            sys.executable,
            "-c",
            "import sys, time; from reslab.storage.runlock import FolderLock;"
            f"FolderLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
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
    run_experiment("shortcuts-cifar", "smoke", str(tiny_cifar), out, jobs=2, progress=False)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["resnet32-A-s0", "resnet32-B-s0", "resnet32-C-s0"]
    for name in runs:  # every step once: no run trained by two jobs
        assert steps(out / "runs" / name) == [1, 2, 3, 4]
    with FolderLock(out), pytest.raises(FolderInUse):
        run_experiment("shortcuts-cifar", "smoke", str(tiny_cifar), out)


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


# --- issue 25: faults a run must survive, each resumed afterwards ---


def tiny_argv(data: Path, out: Path, *flags: str) -> list[str]:
    """The tiny run of helpers.TINY with no lr drops; `flags` (later, so they win) add to it."""
    return ["train", "--data-dir", str(data), *TINY, "--milestones", "", "--out", str(out), *flags]


def test_a_torn_metrics_line_is_dropped_and_the_run_resumes(
    tiny_cifar: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run, log_every=1), stop_after=2)
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-40])  # a crash mid-write: step 2's line torn
    with metrics.open("a") as f:  # and a line past the checkpoint's step
        f.write('{"kind": "train", "step": 3}\n')
    config = (run / "config.json").read_text()
    with pytest.warns(UserWarning, match=r"metrics.jsonl: dropped 1 unreadable line\(s\) \(2\)"):
        assert train(resume=run).status == "finished"
    assert steps(run) == [1, 3, 4]  # step 2's record was lost with the tear
    assert all(json.loads(line) for line in metrics.read_text().splitlines())
    assert (run / "config.json").read_text() == config


def test_a_failed_init_leaves_nothing_and_a_retry_works(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    train(tiny(tiny_cifar, source, iterations=2))
    run = tmp_path / "run"
    cli_error(
        capsys,
        tiny_argv(tiny_cifar, run, "--init", str(tmp_path / "nonexistent")),
        "nonexistent does not exist",
    )
    other = tiny_argv(tiny_cifar, run, "--init", str(source))
    other[other.index('{"n": 1}')] = '{"n": 2}'  # a deeper net than the source's
    cli_error(capsys, other, "weights do not fit resnet20")
    assert not run.exists()  # no config.json, checkpoints/ or .lock left behind
    assert (
        main(
            [
                *tiny_argv(tiny_cifar, run, "--init", str(source)),
                "--iterations",
                "4",
                "--stop-after",
                "2",
            ]
        )
        == 0
    )
    assert main(["train", "--resume", str(run)]) == 0
    assert steps(run) == [4]


class FullDisk(io.RawIOBase):
    """A file on a disk that fills after `room` bytes: ENOSPC, as a real one gives."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(b) > self.room:
            self.f.write(bytes(b[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return self.f.write(b)


def test_a_full_disk_keeps_the_previous_checkpoint_and_resumes(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path, monkeypatch
) -> None:
    import torch

    real_save = torch.save

    def save(obj, f, *args, **kw):  # the disk fills before step 4's checkpoint
        if isinstance(obj, dict) and obj.get("step", 0) >= 4:
            f = FullDisk(f, room=1000)  # torch reports it as RuntimeError("unexpected pos")
        return real_save(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    argv = tiny_argv(
        tiny_cifar,
        run,
        "--iterations",
        "6",
        "--log-every",
        "2",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "6",
    )
    cli_error(
        capsys,
        argv,
        "disk full while writing",
        "last.pt",
        "previous.pt",
        f"reslab train --resume {run}",
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["previous.pt"]
    assert not (run / "summary.json").exists()
    monkeypatch.setattr(torch, "save", real_save)  # space freed
    assert main(["train", "--resume", str(run)]) == 0
    assert steps(run) == [2, 4, 6]


def test_hand_edits_to_config_json_are_named_not_silently_lost(
    tiny_cifar: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run), stop_after=2)
    config = run / "config.json"
    saved = json.loads(config.read_text())
    edited = {**saved, "lr": float("nan"), "batch_size": -4, "model": "resnet9999"}
    config.write_text(json.dumps(edited))
    want = (
        r'model "resnet9999" \(checkpoint: "resnet20"\); batch_size -4 \(checkpoint: 32\); lr NaN'
    )
    with pytest.warns(UserWarning, match=f"config.json differs from the checkpoint.*{want}"):
        train(resume=run, stop_after=3)
    assert json.loads(config.read_text()) == saved  # rewritten, and it said so
    config.write_text("[1, 2]")
    with pytest.warns(UserWarning, match="holds a list, not an object"):
        train(resume=run, stop_after=4)
    assert steps(run) == [2, 4]


def test_refusals_change_nothing_and_stale_temporaries_go(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run), stop_after=2)
    lock = run / ".lock"
    lock.write_text("12345\n")
    cli_error(capsys, tiny_argv(tiny_cifar, run), "already holds a run")
    cli_error(
        capsys,
        ["train", "--resume", str(run / "config.json")],
        "--resume",
        "is a file, not a folder",
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    cli_error(capsys, ["train", "--resume", str(plain)], "not a run folder")
    assert lock.read_text() == "12345\n" and list(plain.iterdir()) == []
    # kill -9 mid-write leaves temporaries; a later open removes the dead writers' ones.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    ckpts = run / "checkpoints"
    stale = [
        ckpts / f".last.pt.{dead}.x1.tmp",
        ckpts / ".last.pt.old_st.tmp",
        run / ".config.json.ab.tmp",
    ]
    live = ckpts / f".best.pt.{os.getppid()}.x2.tmp"  # a live process's: kept
    for p in (*stale, live):
        p.write_bytes(b"")
    assert train(resume=run).status == "finished"
    assert not any(p.exists() for p in stale) and live.exists()


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 16 MB tmpfs, where the platform lets this process mount one (root on Linux)."""
    where = tmp_path / "fs"
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here (the simulated test covers it)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk_resumes(tiny_cifar: Path, small_fs: Path) -> None:
    from reslab.storage.files import DiskFull

    run, ballast = small_fs / "run", small_fs / "ballast"

    def fill_the_disk(step: int) -> None:  # after step 2's checkpoint, nothing more fits
        if step == 2:
            with ballast.open("wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(bytes(1 << 16))
                    f.flush()

    with pytest.raises(DiskFull, match="disk full while writing .*; the .* kept"):
        train(tiny(tiny_cifar, run, iterations=6, eval_every=6), on_step=fill_the_disk)
    ballast.unlink()
    assert train(resume=run).status == "finished" and steps(run) == [2, 4, 6]


def test_overwrite_keeps_the_old_run_until_the_new_one_is_built(
    tiny_cifar: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    before = (run / "metrics.jsonl").read_text()
    not_data = tmp_path / "not-data"
    not_data.write_text("a file")
    with pytest.raises(ValueError, match="not-data"):  # fails while reading the data
        train(tiny(not_data, run, seed=1), overwrite=True)
    assert (run / "metrics.jsonl").read_text() == before
    assert (run / "checkpoints" / "last.pt").exists()
