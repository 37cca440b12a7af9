"""Weights in and out: torchvision naming round trips, clear mismatch errors, safe loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from reslab.models import create_model, infer_architecture, load_weights
from reslab.storage.checkpoint import CheckpointError
from reslab.weights import imagenet_classes, read_weights, save_torchvision

# torchvision ResNet-18..152 checkpoints: every parameter and buffer name, shape and count
# (a copy of the project's reference, so the check runs in every clone).
REFERENCE = Path(__file__).resolve().parent / "data" / "imagenet-resnet-state-dicts.json"


def _randomised(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **kw)
    for m in model.modules():  # non-trivial BN statistics, so a lost buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip_torchvision_naming(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = _randomised("resnet18")
    path = save_torchvision(model, tmp_path / f"r18{suffix}")
    _same(model, create_model("resnet18", weights=path))


def test_plain_dict_is_plain(tmp_path):
    # What torchvision's own loader expects: a flat name -> tensor mapping, nothing else.
    path = save_torchvision(create_model("resnet20"), tmp_path / "r20.pt")
    state = torch.load(path, weights_only=True)
    assert type(state) is dict and all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_loads_torchvision_layout(tmp_path, name):
    """A state dict built only from torchvision's published key list and shapes loads,
    and what reslab saves has exactly those keys and shapes."""
    ref = json.loads(REFERENCE.read_text())[name]["state_dict"]
    g = torch.Generator().manual_seed(1)
    tv = {
        k: torch.rand(shape, generator=g) if dtype == "float32" else torch.tensor(7)
        for k, shape, dtype in ref
    }
    tv = {k: v for k, v in tv.items() if not k.endswith("num_batches_tracked")}  # old files lack it
    torch.save({"state_dict": tv}, tmp_path / "tv.pth")  # wrapped, as many trainers do
    model = create_model(name, weights=tmp_path / "tv.pth")
    for k, v in tv.items():
        assert torch.equal(model.state_dict()[k], v), k
    saved = torch.load(save_torchvision(model, tmp_path / "back.pth"), weights_only=True)
    assert [(k, list(v.shape)) for k, v in saved.items()] == [(k, s) for k, s, _ in ref]


def test_ddp_prefix_and_reslab_checkpoint(tmp_path):
    model = _randomised("resnet20")
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(prefixed, tmp_path / "ddp.pt")
    _same(model, create_model("resnet20", weights=tmp_path / "ddp.pt"))
    ckpt = {
        "format": "reslab-checkpoint",
        "model": model.state_dict(),
        "model_args": model.build_args,
        "classes": list("abcdefghij"),
    }
    torch.save(ckpt, tmp_path / "ck.pt")
    _same(model, create_model("resnet20", weights=tmp_path / "ck.pt"))
    assert read_weights(tmp_path / "ck.pt").checkpoint["classes"][0] == "a"


def test_wrong_class_count_suggests_num_classes(tmp_path):
    path = save_torchvision(create_model("resnet20", num_classes=100), tmp_path / "c100.pth")
    with pytest.raises(ValueError) as e:
        create_model("resnet20", weights=path)
    msg = str(e.value)
    assert str(path) in msg and "fc.weight" in msg and "num_classes=100" in msg


def test_wrong_architecture_lists_keys(tmp_path):
    path = save_torchvision(create_model("resnet20"), tmp_path / "r20.pth")
    with pytest.raises(ValueError) as e:
        create_model("resnet32", weights=path)
    msg = str(e.value)
    assert str(path) in msg and "missing keys" in msg and "layer1.3" in msg
    assert "create_model('resnet20'" in msg  # names what the file actually is


def test_infer_architecture():
    for name in ("resnet20", "resnet56", "resnet18", "resnet50", "plain18", "fastresnet"):
        state = create_model(name, num_classes=7).state_dict()
        assert infer_architecture(state) == (name, {"num_classes": 7})
    state = create_model("resnet18", shortcut="C").state_dict()
    assert infer_architecture(state) == ("resnet18", {"num_classes": 1000, "shortcut": "C"})
    assert infer_architecture({"x": torch.zeros(1)}) is None
    # A file no registered net matches: every family is tried, none raises.
    assert (
        infer_architecture({"fc.weight": torch.zeros(3, 5), "conv9.weight": torch.zeros(1)}) is None
    )


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"fc.weight": torch.zeros(10, 64), "payload": _Evil(str(marker))}, tmp_path / "evil.pth"
    )
    with pytest.raises(CheckpointError) as e:
        load_weights(create_model("resnet20"), tmp_path / "evil.pth")
    assert "evil.pth" in str(e.value)
    assert not marker.exists()


def test_not_a_weights_file(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_weights(create_model("resnet20"), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        load_weights(create_model("resnet20"), tmp_path / "absent.pth")


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    known = {
        0: "tench",
        1: "goldfish",
        207: "golden retriever",
        281: "tabby",
        409: "analog clock",
        999: "toilet tissue",
    }
    assert all(names[i] == v for i, v in known.items())


def test_safetensors_bytes_are_the_same_every_save(tmp_path):
    """Shipped weights are identified by SHA-256: the header (whose metadata safetensors
    writes in random order) is written with sorted keys, so saving again gives the same file."""
    model = create_model("resnet20")
    meta = {"dataset": "cifar10", "classes": ["a", "b"], "image_size": 32}
    files = [save_torchvision(model, tmp_path / f"{i}.safetensors", meta) for i in range(4)]
    assert len({f.read_bytes() for f in files}) == 1
    blob = files[0].read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    assert n % 8 == 0 and list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert read_weights(files[0]).state_dict.keys() == model.state_dict().keys()
