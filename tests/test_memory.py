"""The memory check: a run that cannot fit is refused in one line before any data is read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reslab import devices
from reslab.cli import main
from reslab.config import make_config
from reslab.data.synthetic import make_image_folder
from reslab.training import memory_estimate as memory
from reslab.training.plan import meta_model, plan

pytestmark = pytest.mark.usefixtures("cache")

# The command: ResNet-50 at the paper's batch of 256, 224 px, on a 24 GB machine.
RESNET50 = [
    "train",
    "--recipe",
    "imagenet-paper",
    "--model",
    "resnet50",
    "--dataset",
    "imagefolder",
    "--iterations",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]


def test_limit_sizes_parse() -> None:
    assert devices.parse_bytes("8G") == 8 * 2**30
    assert devices.parse_bytes("512M") == 512 * 2**20
    assert devices.parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert devices.parse_bytes("12884901888") == 12884901888
    for bad in ("lots", "0", "-3G", "8X"):
        with pytest.raises(ValueError, match=r"\$RESLAB_MEMORY_LIMIT="):
            devices.parse_bytes(bad)


def test_refused_in_one_line_before_data_is_read(tmp_path: Path, monkeypatch, capsys) -> None:
    """Under a 24 GiB limit the command is refused with exit 2, one line that gives the
    estimate, the memory, a batch that fits, the accumulation that keeps 256 and the
    override; no run folder and no decoded-image cache exist afterwards. The suggested
    accumulation passes the same check."""
    data = make_image_folder(tmp_path / "data", ["a", "b"], 4, 64)
    out = tmp_path / "run"
    monkeypatch.setenv("RESLAB_MEMORY_LIMIT", "24G")
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))  # where a decode would go
    argv = [*RESNET50, "--data-dir", str(data), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("reslab train: error: resnet50 at batch 256")
    assert "$RESLAB_MEMORY_LIMIT gives 24.0 GiB" in err and "--ignore-memory-check" in err
    assert re.search(r"the largest batch that fits is \d+", err), err
    accum = re.search(r"--batch-size 256 --grad-accum-steps (\d+) \(micro-batches of (\d+)\)", err)
    assert accum and int(accum[1]) * int(accum[2]) == 256, err
    assert not out.exists()
    assert not list(tmp_path.rglob("*.u8")) and not (tmp_path / "cache").exists()
    cfg = make_config(
        "imagenet-paper", model="resnet50", device="cpu", grad_accum_steps=int(accum[1])
    )
    plan(cfg, inputs=False)  # fits: no error
    with pytest.raises(ValueError, match="needs about"):  # one step fewer does not
        plan(
            make_config(
                "imagenet-paper",
                model="resnet50",
                device="cpu",
                grad_accum_steps=int(accum[1]) // 2,
            ),
            inputs=False,
        )


def test_override_and_bad_limit(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = make_config("imagenet-paper", model="resnet50", device="cpu")
    monkeypatch.setenv("RESLAB_MEMORY_LIMIT", "1G")
    plan(make_config(**{**cfg.to_dict(), "ignore_memory_check": True}), inputs=False)
    monkeypatch.setenv("RESLAB_MEMORY_LIMIT", "lots")
    data = make_image_folder(tmp_path / "data", ["a", "b"], 4, 64)
    assert main([*RESNET50, "--data-dir", str(data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "reslab train: error: $RESLAB_MEMORY_LIMIT='lots' is not a size: give bytes, "
        "or e.g. 512M, 8G"
    )
    assert not (tmp_path / "run").exists()


def test_estimate_follows_batch_accumulation_and_checkpointing() -> None:
    cfg = make_config("cifar-paper", model="resnet110")
    shape = memory.model_shape(meta_model(cfg), 32)
    assert shape.params == 1_727_962  # the paper's 1.7M (option A shortcuts: no weights)
    one, four = memory.estimate(cfg, shape, 128, 1), memory.estimate(cfg, shape, 128, 4)
    assert four < one < memory.estimate(cfg, shape, 256, 1)
    ckpt = make_config("cifar-paper", model="resnet110", model_args={"grad_checkpointing": True})
    assert (
        memory.model_shape(meta_model(ckpt), 32).stored < shape.stored / 2
    )  # block inputs, mostly
