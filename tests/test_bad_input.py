"""Bad input gets one clear line naming the problem and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, smoke
from PIL import Image

import reslab
from reslab.cli import main
from reslab.config import TrainConfig, make_config
from reslab.training.loop import train

pytestmark = pytest.mark.usefixtures("cache")


@pytest.fixture(scope="module")
def run(tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "run"
    train(
        make_config(
            "cifar-paper",
            model="resnet20",
            model_args={"n": 1},
            data_dir=str(tiny_cifar),
            out=str(out),
            batch_size=32,
            val_size=64,
            iterations=2,
            eval_batch_size=64,
            progress=False,
            threads=1,
        )
    )
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "cat.jpg"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], *want: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in want:
        assert w in err, (w, err)
    return err


def test_train_bad_values(capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path) -> None:
    base = ["train", "--data-dir", str(tiny_cifar), *TINY, "--out", str(tmp_path / "r")]
    for flags, want in (
        (["--lr", "nan"], "lr must be a finite number"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
        (["--threads", "0"], "threads must be >= 1"),
        (["--label-smoothing", "2"], "label_smoothing must be in [0, 1)"),
        (["--val-size", "-5"], "val_size must be >= 0"),
        (["--image-size", "0"], "image_size must be >= 1"),
        (["--model", "resnet21"], "unknown model"),
    ):
        one_line_error(capsys, [*base, *flags], want)
    assert not (tmp_path / "r").exists()  # nothing created


def test_train_bad_paths(capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("mine")
    for dataset in ("cifar10", "imagefolder"):
        one_line_error(
            capsys,
            [
                "train",
                "--dataset",
                dataset,
                "--data-dir",
                str(file),
                *TINY,
                "--out",
                str(tmp_path / "r"),
            ],
            str(file),
        )
    for out, want in (
        (str(file), "is a file"),
        ("/dev/null", "/dev/null"),
        ("", "empty"),
        ("/sys/reslab-run", "/sys/reslab-run"),
    ):
        one_line_error(capsys, ["train", "--data-dir", str(tiny_cifar), *TINY, "--out", out], want)
    assert file.read_text() == "mine" and Path("/dev/null").is_char_device()


def test_export_bad_targets(capsys: pytest.CaptureFixture, run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    base = ["export", str(run), "--format", "onnx"]
    one_line_error(capsys, [*base, "--out", "/dev/null"], "/dev/null", "not a regular file")
    one_line_error(capsys, [*base, "--out", str(tmp_path)], "is a folder")
    one_line_error(capsys, [*base, "--out", "/sys/x.onnx"], "/sys")
    for opset in ("3", "999"):
        one_line_error(
            capsys,
            [*base, "--out", str(tmp_path / "m.onnx"), "--opset", opset],
            f"--opset {opset} is not supported",
        )
    assert Path("/dev/null").is_char_device()


def test_eval_bad_values(capsys: pytest.CaptureFixture, run: Path, tmp_path: Path) -> None:
    one_line_error(capsys, ["eval", str(run), "--scales", "0,-32"], "--scales")
    one_line_error(capsys, ["eval", str(run), "--batch-size", "0"], "--batch-size must be >= 1")
    # An unwritable --out: the result is printed first, then one error line.
    code = main(["eval", str(run), "--split", "test", "--out", "/sys/eval.json"])
    out, err = capsys.readouterr()
    assert code == 2 and "top-1 error" in out and "/sys/eval.json" in err
    assert len(err.strip().splitlines()) == 1
    # A file the user names as --out is never replaced unless they say so.
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    one_line_error(capsys, ["eval", str(run), "--out", str(mine)], "exists; give another --out")
    assert mine.read_text() == "my notes"
    assert main(["eval", str(run), "--split", "test", "--out", str(mine), "--overwrite"]) == 0
    assert "top1_error" in mine.read_text()


def test_eval_val_split_shorter_than_a_batch(capsys: pytest.CaptureFixture, run: Path) -> None:
    assert main(["eval", str(run), "--split", "val", "--batch-size", "200"]) == 0
    assert "(64 images" in capsys.readouterr().out  # 64 < 200: one short batch


def test_predict(capsys: pytest.CaptureFixture, run: Path, image: Path, tmp_path: Path) -> None:
    one_line_error(
        capsys, ["predict", str(run), str(image), "--batch-size", "0"], "--batch-size must be >= 1"
    )
    one_line_error(capsys, ["predict", str(image), str(image)], "is an image (JPEG), not a model")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(run), str(image)]) == 0
    assert main(["predict", str(run), str(image), str(image), str(bad)]) == 1  # one of 3 failed
    capsys.readouterr()


def test_api_checks_before_building(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train(TrainConfig(batch_size=-1, out=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
    for kw, want in (
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": -1}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"width_mult": 0}, "width_mult"),
    ):
        with pytest.raises(ValueError, match=want):
            reslab.create_model("resnet20", **kw)


def test_metrics_are_strict_json_when_training_diverges(tiny_cifar: Path, tmp_path: Path) -> None:
    from reslab.training.runstate import json_line

    assert json_line({"loss": float("nan"), "x": float("inf")}) == '{"loss": null, "x": null}'


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "RESLAB_MALLOC_TUNING": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "reslab", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_interrupt_during_start_up_is_one_line(tiny_cifar: Path, tmp_path: Path) -> None:
    p = _cli(["train", "--data-dir", str(tiny_cifar), *TINY, "--out", str(tmp_path / "r")])
    time.sleep(2)  # importing torch or reading data: inside main(), before training
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err


def test_sigterm_exits_143(tiny_cifar: Path, tmp_path: Path) -> None:
    args = [
        "train",
        "--data-dir",
        str(tiny_cifar),
        *TINY,
        "--iterations",
        "100000",
        "--log-every",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    p = _cli(args)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    last = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert last["status"] == "interrupted"


# --- train side, issue 25: each value refused in one line, before anything is created ---


def test_train_refuses_round3_values(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    base = ["train", "--data-dir", str(tiny_cifar), *TINY, "--out", str(out)]
    for flags, want in (
        (["--milestones", "3,2"], "milestones must be increasing steps >= 1, got 3,2"),
        (["--milestones", "-3,2"], "milestones must be increasing"),  # a value, not a flag
        (["--lr", "-1e-3"], "lr must be > 0, got -0.001"),
        (["--stop-after", "-1"], "stop_after must be a step >= 1, got -1"),
        (["--freeze-stages", "99"], "freeze_stages 99 is more than resnet20's 3 stages"),
        (["--plateau-patience", "-1"], "plateau_patience must be >= 0, got -1"),
        (["--warmup-until-error", "5"], "warmup_until_error must be in [0, 1], got 5.0"),
        (["--momentum", "1.5"], "momentum must be in [0, 1), got 1.5"),
        (["--model-args", "[1,2]"], "model_args must be a mapping"),
        (["--model-args", "{bad"], "--model-args '{bad' is not JSON"),
        (["--device", "mps"], "device 'mps' asked for, but MPS"),
        (["--data-dir", ""], "data_dir is empty"),
        (["--data-dir", str(tmp_path / "nowhere")], "nowhere does not exist"),
    ):
        err = one_line_error(capsys, [*base, *flags], want)
        if flags[0] == "--momentum":  # only the bad field is named
            assert "weight_decay" not in err and "gamma" not in err
    assert not out.exists()
    # Without --out, a refused run names no folder either.
    code = main(["train", "--data-dir", "", *TINY])
    assert code == 2 and "run folder" not in capsys.readouterr().out


def test_train_api_refuses_wrong_types(tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    for kw, want in (
        ({"milestones": "3,2"}, "milestones must be a list of integers, got '3,2'"),
        ({"recipe": "nope"}, "unknown recipe 'nope'"),
        ({"iterations": 3.7}, "iterations must be an integer, got 3.7"),
        ({"model_args": [1, 2]}, "model_args must be a mapping"),
        ({"batch_size": True}, "batch_size must be an integer"),
    ):
        with pytest.raises(ValueError, match=re.escape(want)):
            train(TrainConfig(**kw, out=out))
    with pytest.raises(ValueError, match="stop_after must be a step >= 1"):
        train(TrainConfig(out=out), stop_after=0)
    assert not Path(out).exists()
    with pytest.raises(ValueError, match="num_classes must be an integer, got 2.5"):
        reslab.create_model("resnet20", num_classes=2.5)
    with pytest.raises(ValueError, match="n must be an integer"):
        reslab.create_model("resnet20", n=1.5)


# ---------------------------------------------------------------- issue 25: eval, export, use


def nothing_new(folder: Path, before: set[Path]) -> None:
    assert set(folder.rglob("*")) == before, set(folder.rglob("*")) ^ before


def test_eval_scales_and_splits(capsys: pytest.CaptureFixture, run: Path, tmp_path: Path) -> None:
    before = set(run.rglob("*"))
    one_line_error(capsys, ["eval", str(run), "--scales", ""], "--scales", "''")
    # 32 px CIFAR nets shrink their input 4x: scale 20 is a 3 px view
    one_line_error(
        capsys,
        ["eval", str(run), "--scales", "20,224"],
        "--scales 20 is too small",
        "the smallest scale is 25",
    )
    one_line_error(
        capsys,
        ["eval", str(run), "--scales", "100000"],
        "--scales 100000",
        "GiB",
        "the largest scale that fits is",
    )
    nothing_new(run, before)
    # The training split plays no part: 256 training images, batch 1000.
    assert (
        main(
            [
                "eval",
                str(run),
                "--split",
                "val",
                "--batch-size",
                "1000",
                "--out",
                str(tmp_path / "v.json"),
            ]
        )
        == 0
    )
    # A folder with only test/ is enough to evaluate on its test split, not on val.
    from reslab.data.synthetic import make_image_folder

    only_test = make_image_folder(tmp_path / "t", [f"class{i}" for i in range(10)], 2, 32, "test")
    assert (
        main(["eval", str(run), "--data-dir", str(only_test), "--out", str(tmp_path / "t.json")])
        == 0
    )
    assert "(20 images" in capsys.readouterr().out
    one_line_error(
        capsys,
        ["eval", str(run), "--data-dir", str(only_test), "--split", "val"],
        str(only_test),
        "no 'val' split",
    )


def test_eval_refuses_a_classifier_of_other_classes(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path
) -> None:
    import torch

    plain = tmp_path / "r20-1000.pth"
    torch.save(reslab.create_model("resnet20", num_classes=1000).state_dict(), plain)
    one_line_error(
        capsys,
        ["eval", str(plain), "--data-dir", str(tiny_cifar), "--dataset", "cifar10"],
        "1000-way classifier",
        "10 classes",
    )
    assert sorted(tmp_path.iterdir()) == [plain]


def test_arch_and_manifest_conflicts(
    capsys: pytest.CaptureFixture,
    run: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reslab.storage.downloads import file_digest
    from reslab.weights import save_torchvision

    for model, arch, want in (
        (run, "nope", "--arch: unknown model 'nope'"),
        (run, "resnet56", "holds a resnet20; --arch resnet56 conflicts"),
        ("cifar10:resnet56", "resnet20", "holds a resnet56; --arch resnet20"),
    ):
        one_line_error(capsys, ["predict", str(model), str(image), "--arch", arch], want)
    one_line_error(
        capsys,
        [
            "export",
            str(run),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "m.onnx"),
            "--arch",
            "nope",
        ],
        "nope",
    )
    # A manifest of the user's that names another network than its file holds.
    net = reslab.create_model("resnet20")
    weights = save_torchvision(
        net, tmp_path / "w.safetensors", {"model_args": {"name": "resnet20", "num_classes": 10}}
    )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "mine:resnet56": {
                    "model": "resnet56",
                    "file": weights.name,
                    "sha256": file_digest(weights),
                }
            }
        )
    )
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(tmp_path))
    one_line_error(
        capsys,
        ["predict", "mine:resnet56", str(image)],
        str(manifest),
        "'mine:resnet56'",
        "'resnet56'",
        "holds a resnet20",
    )


def test_normalization_values_are_on_0_1(
    capsys: pytest.CaptureFixture, run: Path, image: Path
) -> None:
    base = ["predict", str(run), str(image), "--normalize", "channel"]
    one_line_error(
        capsys,
        [*base, "--mean", "128,128,128", "--std", "0.2,0.2,0.2"],
        "--mean needs 3 numbers on [0, 1]",
        "128,128,128",
    )
    one_line_error(
        capsys,
        [*base, "--mean", "0.5,0.5,0.5", "--std", "64,64,64"],
        "--std needs 3 numbers on [0, 1]",
        "64,64,64",
    )


def test_export_options(
    capsys: pytest.CaptureFixture, run: Path, image: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    base = ["export", str(run), "--out", str(out)]
    one_line_error(capsys, [*base, "--format", "onnx", "--opset", "9"], "choose 10..20")
    one_line_error(
        capsys,
        [*base, "--format", "torchscript", "--opset", "17"],
        "--opset 17 is for --format onnx only",
    )
    one_line_error(capsys, [*base, "--format", "onnx", "--dataset", "mnist"], "goes with --int8")
    one_line_error(
        capsys, [*base, "--format", "onnx", "--int8", "--dataset", "mnist"], "--dataset 'mnist'"
    )
    one_line_error(
        capsys,
        [*base, "--format", "onnx", "--int8", "--dataset", "imagefolder"],
        "conflicts with the model, trained on cifar10",
    )
    one_line_error(
        capsys,
        [*base, "--format", "onnx", "--int8", "--calibration", str(image)],
        f"--calibration {image} is a file",
    )
    assert list(tmp_path.iterdir()) == []
    # The lowest opset advertised works; a legal 254-character name is written.
    long = tmp_path / ("m" * 249 + ".onnx")
    assert main(["export", str(run), "--format", "onnx", "--opset", "10", "--out", str(long)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [long.name]


def test_sort_val_refuses_an_image_under_two_labels(
    capsys: pytest.CaptureFixture, image: Path, tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(image.read_bytes())
    labels = tmp_path / "labels.txt"
    labels.write_text(
        "ILSVRC2012_val_00000001.JPEG n01440764\nILSVRC2012_val_00000001.JPEG n01443537\n"
    )
    out = tmp_path / "out"
    base = ["sort-val", str(flat), "--out", str(out), "--labels"]
    one_line_error(
        capsys,
        [*base, str(labels)],
        str(labels),
        "ILSVRC2012_val_00000001",
        "n01440764",
        "n01443537",
    )
    labels.write_bytes(b"\xff\xfeI\x00L\x00")  # UTF-16, say
    one_line_error(capsys, [*base, str(labels)], str(labels), "not a text label file")
    assert not out.exists()


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    from reslab.data.sources import DatasetError, index_split, tree_key
    from reslab.data.synthetic import make_image_folder

    root = make_image_folder(tmp_path / "t", ["a", "b"], 2, 16)
    bad = root / "train" / "a" / os.fsdecode(b"bad\xff.jpg")
    bad.write_bytes((root / "train" / "a" / "0000.jpg").read_bytes())
    with pytest.warns(
        UserWarning,
        match=r"skipped 1 image files whose names are not valid "
        r"UTF-8, e.g. '.*bad\\udcff.jpg'",
    ):
        ix = index_split(root, "train")
    assert len(ix.paths) == 4 and tree_key(root)  # the tree's cache key can be computed
    (root / "train" / "b").rename(root / "train" / os.fsdecode(b"b\xff"))
    with pytest.raises(DatasetError, match=r"class folder '.*b\\udcff': its name is not valid"):
        index_split(root, "train")


def test_extraction_limits_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from reslab.data.sources import DatasetError, extraction_limits

    for value in ("nan", "inf", "-1", "lots"):
        monkeypatch.setenv("RESLAB_MAX_EXTRACT_GB", value)
        with pytest.raises(DatasetError, match=rf"\$RESLAB_MAX_EXTRACT_GB='{value}'"):
            extraction_limits()


def test_load_errors_say_what_the_file_is(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import pickle

    files = {
        "text.pth": b"hello world\n",
        "empty.pth": b"",
        "evil.pth": pickle.dumps({"x": os.system}, protocol=2),
    }
    wants = {
        "text.pth": "not a PyTorch file",
        "empty.pth": "empty file (0 bytes)",
        "evil.pth": "refused to load: only tensors and plain data",
    }
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        err = one_line_error(capsys, ["predict", str(tmp_path / name), "x.png"], name, wants[name])
        assert "weights_only" not in err and "likely succeed" not in err, err


def test_report_refuses_a_locked_or_damaged_folder(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from reslab.storage.runlock import FolderLock

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text("{garbage")
    one_line_error(capsys, ["report", str(exp)], str(exp / "experiment.json"), "not valid JSON")
    with FolderLock(exp):
        one_line_error(capsys, ["report", str(exp)], f"{exp} is in use")
    assert sorted(p.name for p in exp.iterdir()) == [".lock", "experiment.json"]


def test_reproduce_counts(
    capsys: pytest.CaptureFixture, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exp"
    base = [
        *smoke("degradation", tiny_cifar, out),
        "--no-progress",
    ]
    one_line_error(capsys, [*base, "--seeds", "0"], "--seeds must be >= 1, got 0")
    one_line_error(capsys, [*base, "--threads", "0"], "--threads must be >= 1, got 0")
    # 1000 jobs are capped at the plan's 8 runs, which 2 GiB cannot hold (1 GiB a job).
    monkeypatch.setenv("RESLAB_MEMORY_LIMIT", "2G")
    one_line_error(capsys, [*base, "--jobs", "1000"], "--jobs 8:", "holds at most 2 at once")
    assert not out.exists()


def test_cli_warnings_are_one_reslab_line(
    capsys: pytest.CaptureFixture, run: Path, image: Path
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["predict", str(run), str(image), "--normalize", "imagenet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reslab: warning: "), err
    assert "instead of the one the file records" in err[0] and ".py:" not in err[0]
