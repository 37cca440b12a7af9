"""Issue 35, the fourth round of hostile input: nothing written through a link or over
an input (A), the same seed with or without a cache and no diverged run called finished
(C), and the round's other inputs. Each test feeds the input and asserts the outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, cli_error, smoke, tiny

from reslab.cli import main
from reslab.config import make_config
from reslab.data.augment import Normalizer
from reslab.data.folder_cache import decoded_split
from reslab.data.sources import index_split
from reslab.data.synthetic import make_image_folder
from reslab.errors import NonFiniteScores
from reslab.evaluation import topk_errors
from reslab.models import build
from reslab.models.loading import mismatch_report
from reslab.storage.files import append_line
from reslab.storage.runlock import FolderLock
from reslab.training.loop import train

pytestmark = pytest.mark.usefixtures("cache")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("\n".join(map(str, range(1, 10001))) + "\n")
    return path


# ------------------------------------------------------------------ A: files and links


def test_a_linked_lock_is_refused_and_its_target_kept(
    tiny_cifar: Path, tmp_path: Path, victim: Path, capsys
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    before = victim.read_bytes()
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    cli_error(capsys, ["train", "--resume", str(run)], ".lock is a symbolic link")
    with pytest.raises(ValueError, match="symbolic link"):
        FolderLock(run).acquire()
    assert victim.read_bytes() == before and (run / ".lock").is_symlink()
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")  # not a regular file either
    with pytest.raises(ValueError, match="not a regular file"):
        FolderLock(run).acquire()


def test_figures_and_metrics_are_never_written_through_a_link(tmp_path: Path, victim: Path) -> None:
    from reslab.reproduce.report import write_report

    src = Path(__file__).resolve().parent.parent / "docs" / "results" / "shortcuts-cpu"
    folder = tmp_path / "exp"
    subprocess.run(["cp", "-r", str(src), str(folder)], check=True)
    (folder / "curves.png").unlink()
    (folder / "curves.png").symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(ValueError, match="curves.png is a symbolic link"):
        write_report(folder)
    assert victim.read_bytes() == before
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        append_line(link, '{"step": 1}\n')
    assert victim.read_bytes() == before


def test_a_linked_checkpoints_folder_is_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside)
    with pytest.raises(ValueError, match="checkpoints is a symbolic link"):
        train(tiny(tiny_cifar, run))
    assert list(outside.iterdir()) == []


def test_overwrite_removes_the_old_scores_and_keeps_the_users_files(
    tiny_cifar: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    for name in ("eval-val-centre.json", "views.json"):
        (run / name).write_text('{"top1_error": 1.0}')
    (run / "checkpoints" / "my-notes.txt").write_text("mine")
    (run / "README.md").write_text("mine too")
    capsys.readouterr()
    train(tiny(tiny_cifar, run, seed=1), overwrite=True)
    out = capsys.readouterr().out
    assert not (run / "eval-val-centre.json").exists() and not (run / "views.json").exists()
    assert (run / "checkpoints" / "my-notes.txt").read_text() == "mine"
    assert (run / "README.md").read_text() == "mine too"
    assert "kept 1 file(s)" in out and "my-notes.txt" in out
    assert (run / "checkpoints" / "best.pt").exists()


def test_an_output_that_is_an_input_is_refused(tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    best = run / "checkpoints" / "best.pt"
    before = best.read_bytes()
    cli_error(
        capsys,
        ["eval", str(run), "--data-dir", str(tiny_cifar), "--out", str(best), "--overwrite"],
        "an input of this command",
    )
    cli_error(
        capsys,
        [
            "eval",
            str(run),
            "--data-dir",
            str(tiny_cifar),
            "--out",
            str(run / "config.json"),
            "--overwrite",
        ],
        "an input",
    )
    cli_error(
        capsys,
        ["export", str(best), "--out", str(best), "--overwrite", "--format", "torchscript"],
        "an input of this command",
    )
    assert best.read_bytes() == before


# ------------------------------------------------------------------ C: seeds and honesty


def test_the_same_seed_trains_the_same_with_or_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_image_folder(tmp_path / "data", ["a", "b", "c"], 12, 40)
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "fresh-cache"))
    kw = dict(
        model="resnet18",
        model_args={"width_mult": 0.125},
        dataset="imagefolder",
        data_dir=str(data),
        image_size=32,
        val_size=8,
        batch_size=8,
        iterations=3,
        milestones=(),
        log_every=1,
        eval_every=3,
        checkpoint_every=3,
        eval_batch_size=8,
        progress=False,
        threads=1,
        workers=1,
        deterministic=True,
        seed=3,
    )

    def weights(out: Path) -> dict[str, torch.Tensor]:
        result = train(make_config("imagenet-paper", out=str(out), **kw))
        assert result.summary["decoded_cache"] is not None  # both read the decoded cache
        return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]

    built = weights(tmp_path / "builds")  # decodes the cache on its way in
    reused = weights(tmp_path / "reuses")
    assert built.keys() == reused.keys()
    for k in built:
        assert torch.equal(built[k], reused[k]), k


def test_a_diverged_run_says_so_and_is_never_finished(
    tiny_cifar: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(tiny_cifar), *TINY, "--iterations", "6", "--out", str(run)]
    argv += ["--eval-every", "3", "--checkpoint-every", "1", "--log-every", "1"]
    argv += ["--lr", "1000", "--milestones", ""]
    err = cli_error(capsys, argv, "diverged at step")
    assert "finished" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    records = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any(r["kind"] == "eval" and r.get("top1_error") is None for r in records)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(v.isfinite().all() for v in last["model"].values() if v.is_floating_point())


def test_nan_outputs_are_no_error_rate() -> None:
    scores = torch.full((4, 10), float("nan"))
    with pytest.raises(NonFiniteScores, match="NaN or infinite for 4 of 4"):
        topk_errors(scores, torch.zeros(4, dtype=torch.long))


def test_damaged_cache_bytes_are_rebuilt(tmp_path: Path, capfd) -> None:
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 6, 40)
    ix = index_split(root, "train")
    first = decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    want = np.asarray(first.images).copy()
    size = first.path.stat().st_size
    with open(first.path, "r+b") as f:  # same size, other bytes
        f.write(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes())
    capfd.readouterr()
    again = decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    assert "does not match its header's checksum" in capfd.readouterr().err
    assert again.build_s > 0 and np.array_equal(np.asarray(again.images), want)


def test_a_killed_cache_builds_temporary_file_is_swept(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 6, 40)
    ix = index_split(root, "train")
    split = decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    leftover = split.path.parent / f".{split.path.name}.{dead}.abc.tmp"
    leftover.write_bytes(b"x" * 100)
    split.path.unlink()  # the next open must build, and sweep on its way
    decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    assert not leftover.exists()


@pytest.mark.parametrize(
    "record, want",
    [
        ({"kind": "channel", "mean": [0.5] * 3, "std": [0.0, 0.2, 0.2]}, "std > 0"),
        ({"kind": "channel", "mean": [float("nan")] * 3, "std": [0.2] * 3}, "finite"),
        ({"kind": "channel", "mean": [0.5] * 3, "std": [0.2, 0.2]}, "std needs 3 value"),
        ({"kind": "pixel-mean", "mean": [0.5] * 3, "std": [0.2, 0.2]}, "std needs 1 value"),
    ],
)
def test_bad_preprocessing_records_are_refused(record: dict, want: str) -> None:
    with pytest.raises(ValueError, match=want):
        Normalizer.from_dict(record)


def test_integer_weights_are_named_not_cast() -> None:
    model = build("resnet20", n=1)
    state = {k: v.to(torch.int64) if k == "fc.weight" else v for k, v in model.state_dict().items()}
    assert "non-float weights (1): fc.weight: file torch.int64" in mismatch_report(model, state)


def test_model_arguments_are_checked_against_their_types(
    tiny_cifar: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "r"
    cli_error(
        capsys,
        [
            "train",
            "--data-dir",
            str(tiny_cifar),
            "--out",
            str(out),
            "--model-args",
            '{"zero_init_residual": "sometimes"}',
        ],
        "zero_init_residual must be true or false",
    )
    cli_error(
        capsys,
        [
            "train",
            "--data-dir",
            str(tiny_cifar),
            "--out",
            str(out),
            "--model-args",
            '{"widths": "abc"}',
        ],
        "widths must be a list of integers",
    )
    assert not out.exists()
    cli_error(
        capsys,
        [
            *smoke("degradation", tiny_cifar, tmp_path / "e"),
            "--grad-accum-steps",
            "0",
        ],
        "grad",
    )
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------ B and E: processes


def test_decode_workers_end_with_their_parent(tmp_path: Path) -> None:
    """kill -9 of a process building the cache: its workers go too, and the run folder's
    lock is free at once."""
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 200, 64)
    run = tmp_path / "run"
    script = f"""
import time, sys
from pathlib import Path
from reslab.storage.runlock import FolderLock
from reslab.data.sources import index_split
from reslab.data import folder_cache
lock = FolderLock({str(run)!r}).acquire()
ix = index_split(Path({str(root)!r}), "train")
real = folder_cache._Rows.__getitem__
def slow(self, i):
    time.sleep(0.05)
    return real(self, i)
folder_cache._Rows.__getitem__ = slow
print("building", flush=True)
folder_cache.decoded_split(ix.root, ix.paths, 64, Path({str(tmp_path / "c")!r}), workers=2)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "building"
    time.sleep(3)  # the workers are decoding
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 20
    while True:
        try:
            FolderLock(run).acquire().release()
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_stop_signals_save_a_checkpoint(tiny_cifar: Path, tmp_path: Path) -> None:
    from reslab.signals import STOP_SIGNALS

    assert {signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1} <= set(STOP_SIGNALS)
    run = tmp_path / "run"
    args = ["train", "--data-dir", str(tiny_cifar), *TINY, "--iterations", "100000"]
    args += ["--out", str(run)]
    env = {**os.environ, "RESLAB_MALLOC_TUNING": "0"}
    p = subprocess.Popen(
        [sys.executable, "-m", "reslab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=120)
    assert "SIGHUP: checkpoint saved" in out, out + err
    assert (run / "checkpoints" / "last.pt").exists()


# ------------------------------------------------------------------ B, D: sizes and files


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (120, 30, 200)).save(path)
    return path


def _weights(tmp_path: Path, meta: dict) -> Path:
    from reslab.weights import save_torchvision

    return save_torchvision(build("resnet20", n=1), tmp_path / "w.safetensors", meta)


@pytest.mark.parametrize(
    "meta, want",
    [
        ({"model_args": {"name": "resnet20", "n": 100_000_000}}, "beyond what reslab builds"),
        ({"model_args": {"name": "resnet20", "n": 3}}, "weights do not fit resnet20"),
        ({"model_args": {"name": "resnet20", "num_classes": 10**10}}, "beyond"),
        ({"model_args": {"name": "resnet20", "widths": [10**6] * 3}}, "beyond"),
        ({"model_args": "resnet20"}, "model_args must be an object"),
        ({"model_args": {"name": "resnet20", "n": 1}, "image_size": 100000}, "image_size"),
        ({"model_args": {"name": "resnet20", "n": 1}, "image_size": -5}, "image_size"),
        ({"model_args": {"name": "resnet20", "n": 1}, "image_size": "abc"}, "image_size"),
        (
            {
                "model_args": {"name": "resnet20", "n": 1},
                "normalization": {"kind": "channel", "mean": [0.5] * 3, "std": [0.0] * 3},
            },
            "std > 0",
        ),
    ],
)
def test_sizes_and_records_in_a_weights_file_are_checked_before_they_allocate(
    tmp_path: Path, image: Path, capsys, meta: dict, want: str
) -> None:
    weights = _weights(tmp_path, meta)
    t0 = time.time()
    cli_error(capsys, ["predict", str(weights), str(image)], want)
    assert time.time() - t0 < 30  # refused, not built first


def test_safetensors_metadata_that_is_no_object_is_named(tmp_path: Path, capsys, image) -> None:
    from safetensors.torch import save

    from reslab.weights import META_KEY, torchvision_state_dict

    state = torchvision_state_dict(build("resnet20", n=1))
    for raw in ("[1, 2]", "null", '"text"'):
        path = tmp_path / "w.safetensors"
        path.write_bytes(save(state, metadata={META_KEY: raw}))
        cli_error(capsys, ["predict", str(path), str(image)], "must be a JSON object")


@pytest.mark.parametrize(
    "manifest, want",
    [
        ("[1, 2]", "not list"),
        ("null", "not NoneType"),
        ('{"mine:resnet20": [1]}', "needs a TAG:MODEL name and an object"),
        (
            '{"mine:resnet20": {"model": "resnet20", "file": 5, "sha256": "ab"}}',
            "'file' must be a string",
        ),
    ],
)
def test_a_bad_manifest_is_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, image: Path, manifest: str, want: str
) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(tmp_path))
    cli_error(capsys, ["predict", "mine:resnet20", str(image)], "manifest.json", want)


def test_a_cache_header_with_a_huge_number_is_rebuilt(tmp_path: Path, capfd) -> None:
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 6, 40)
    ix = index_split(root, "train")
    first = decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    head = first.path.with_suffix(".json")
    meta = json.loads(head.read_text())
    head.write_text(json.dumps(meta).replace('"bad": []', '"bad": [1e400]'))
    capfd.readouterr()
    again = decoded_split(ix.root, ix.paths, 40, tmp_path / "c", workers=0)
    assert "unreadable" in capfd.readouterr().err and again.build_s > 0


@pytest.mark.parametrize(
    "record, want",
    [
        ('{"kind": "train", "step": 10, "error": true}', "'error' must be a number"),
        ('{"kind": "train", "step": 10, "error": -5}', "'error' is an error rate"),
        ('{"kind": "train", "step": 10, "error": 1e308}', "'error' is an error rate"),
        ('{"kind": "train", "step": 10, "loss": Infinity}', "'loss' must be a number"),
        ('{"kind": "train", "step": 10, "loss": []}', "'loss' must be a number"),
        ('{"kind": "eval", "split": "val", "step": 10, "top1_error": "abc"}', "'top1_error'"),
    ],
)
def test_report_names_a_bad_number_in_the_records(tmp_path: Path, capsys, record, want) -> None:
    src = Path(__file__).resolve().parent.parent / "docs" / "results" / "shortcuts-cpu"
    folder = tmp_path / "exp"
    subprocess.run(["cp", "-r", str(src), str(folder)], check=True)
    metrics = folder / "runs" / "resnet34-B-s0" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write(record + "\n")
    cli_error(capsys, ["report", str(folder)], "metrics.jsonl line", want)


def test_a_null_loss_of_a_diverged_interval_is_read_as_unknown(tmp_path: Path) -> None:
    from reslab.reproduce.runs import checked_numbers

    assert checked_numbers({"step": 3, "loss": None, "error": 90.0}, "x") == {
        "step": 3,
        "error": 90.0,
    }


def test_seed_lists_are_bounded(tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    cli_error(
        capsys,
        [
            *smoke("degradation", tiny_cifar, tmp_path / "e"),
            "--seeds",
            "1000000000",
        ],
        "at most 100 seeds",
    )
    assert not (tmp_path / "e").exists()


def test_a_run_that_fails_in_its_first_step_leaves_the_folder_as_found(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reslab.training import loop

    def broken(*a, **k):
        raise RuntimeError("a failure inside the first step")

    monkeypatch.setattr(loop, "train_step", broken)
    for run in (tmp_path / "new", tmp_path / "mine"):
        if run.name == "mine":
            run.mkdir()
            (run / "notes.txt").write_text("mine")
        with pytest.raises(RuntimeError, match="first step"):
            train(tiny(tiny_cifar, run))
        left = sorted(p.name for p in run.iterdir()) if run.exists() else None
        assert left == (None if run.name == "new" else ["notes.txt"]), left
    monkeypatch.undo()
    train(tiny(tiny_cifar, tmp_path / "mine"))  # a rerun needs no --overwrite


def test_a_spawned_job_ends_when_reproduce_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "job-stopped"
    script = f"""
import multiprocessing, signal, sys, time
from pathlib import Path

def job():
    from reslab.data.workers import die_with_parent
    def stop(*a):
        Path({str(marker)!r}).write_text("saved")
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    die_with_parent(signal.SIGTERM, multiprocessing.parent_process().pid)
    Path({str(marker)!r} + ".ready").write_text("")
    time.sleep(60)

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=job)
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    deadline = time.time() + 60
    while not Path(f"{marker}.ready").exists() and time.time() < deadline:
        time.sleep(0.1)  # the job has set its parent-death signal
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "saved"
    stat = Path(f"/proc/{child}/stat")

    def ended() -> bool:  # gone, or a zombie waiting for whoever adopted it to reap it
        try:
            return stat.read_text().split(")")[1].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    deadline = time.time() + 30
    while not ended() and time.time() < deadline:
        time.sleep(0.1)
    assert ended()


# ------------------------------------------------------------------ E: words and refusals


@pytest.mark.parametrize(
    "fmt, ext, runner",
    [("torchscript", ".ts", "torch.jit.load"), ("pt2", ".pt2", "torch.export.load")],
)
def test_predict_on_an_export_says_which_tool_runs_it(
    tmp_path: Path, image: Path, capsys, fmt: str, ext: str, runner: str
) -> None:
    from reslab.inference import export

    meta = {"model_args": {"name": "resnet20", "n": 1, "num_classes": 10}, "image_size": 32}
    out = export(_weights(tmp_path, meta), fmt, tmp_path / f"m{ext}")
    err = cli_error(capsys, ["predict", str(out), str(image)], "export", runner)
    assert "truncated" not in err and "weights_only" not in err


def test_a_mean_image_net_on_an_imagefolder_is_pointed_to_cifar10(
    tiny_cifar: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    train(tiny(tiny_cifar, run))
    folder = make_image_folder(tmp_path / "imgs", ["a", "b"], 4, 32, split="val")
    cli_error(
        capsys,
        ["eval", str(run), "--dataset", "imagefolder", "--data-dir", str(folder)],
        "--dataset cifar10",
    )


def test_weights_dir_that_is_no_folder_is_refused(tmp_path: Path, capsys) -> None:
    cli_error(capsys, ["weights", "--weights-dir", str(tmp_path / "nonexistent")], "not a folder")


def test_reuse_refuses_a_finished_run_that_cannot_be_scored(tmp_path: Path) -> None:
    from reslab.reproduce.reuse import matching_runs

    src = tmp_path / "src" / "runs" / "resnet34-A-s0"
    src.mkdir(parents=True)
    (src / "summary.json").write_text('{"status": "finished"}')
    (src / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checkpoints are gone"):
        matching_runs(tmp_path / "src", tmp_path / "out", {"resnet34-A-s0": {}})
    (src / "views.json").write_text("{}")  # scored before its checkpoints went: usable
    assert matching_runs(tmp_path / "src", tmp_path / "out", {"resnet34-A-s0": {}}) == [
        "resnet34-A-s0"
    ]


def test_two_runs_started_at_once_take_two_default_folders(
    tiny_cifar: Path, tmp_path: Path
) -> None:
    args = ["train", "--data-dir", str(tiny_cifar), *TINY]
    env = {**os.environ, "RESLAB_MALLOC_TUNING": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reslab", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["run", "run-2"], (folders, outs)
    assert all((tmp_path / "runs" / f / "summary.json").exists() for f in folders)


def test_a_run_with_no_held_out_images_ends_with_a_final_line(
    tiny_cifar: Path, tmp_path: Path, capsys
) -> None:
    from reslab.data.synthetic import make_image_folder as folder

    data = folder(tmp_path / "data", ["a", "b"], 20, 32)  # train/ only: no test split
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(data),
                "--model",
                "resnet20",
                "--model-args",
                '{"n": 1}',
                "--image-size",
                "32",
                "--val-size",
                "0",
                "--batch-size",
                "8",
                "--iterations",
                "2",
                "--no-progress",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "finished at step 2 (no held-out images to evaluate on)" in out, out
