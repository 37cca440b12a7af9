"""Inference: BN folding keeps outputs, predict on real files, exports that run and agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import reslab.inference as inference
from reslab.cli import main
from reslab.data.augment import center_view
from reslab.inference import (
    OneDNNGraph,
    center_crop,
    export,
    optimize_for_inference,
    predict,
    read_export_metadata,
)
from reslab.models import create_model
from reslab.weights import save_torchvision


def _randomised(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **kw)
    for m in model.modules():  # BN that is not the identity, so folding has work to do
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two JPEGs, a greyscale PNG, a tiny RGBA PNG and a corrupt file in one folder."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (90, 50, 3), dtype=np.uint8)).save(folder / "b.jpeg")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / "c.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)).save(folder / "d.png")
    (folder / "e.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    return folder


@pytest.fixture(scope="module")
def r20_file(tmp_path_factory):
    return save_torchvision(_randomised("resnet20"), tmp_path_factory.mktemp("w") / "r20.pth")


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
@pytest.mark.parametrize("mode", ["fold", "onednn", "jit"])
def test_optimize_same_outputs(name, mode):
    model = _randomised(name)
    s = 32 if name == "resnet20" else 64
    x = torch.randn(3, 3, s, s)
    with torch.no_grad():
        want = model(x)
        fast = optimize_for_inference(model, example_input=x[:1], mode=mode)
        got = fast(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if mode == "fold":  # a real fold: no batch norm is left, convs carry the shift as bias
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
        assert fast.conv1.bias is not None
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched


def test_auto_is_onednn_on_cpu_and_leaves_the_global_switch_alone():
    model = _randomised("resnet20")
    before = torch._C._jit_llga_enabled()
    fast = optimize_for_inference(model, example_input=torch.randn(1, 3, 32, 32))
    assert isinstance(fast, OneDNNGraph)
    x = torch.randn(4, 3, 32, 32)  # a new batch size: re-profiled, same answer
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    assert torch._C._jit_llga_enabled() == before


def test_optimize_falls_back_instead_of_failing():
    model = _randomised("resnet20")
    bad = torch.randn(1, 5, 32, 32)  # wrong channel count: tracing fails
    with pytest.warns(UserWarning, match="folded eager"):
        fast = optimize_for_inference(model, example_input=bad, mode="jit")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


def test_center_crop_matches_the_evaluation_view(images):
    for name in ("a.jpg", "c.png"):
        path = images / name
        with Image.open(path) as img:
            np.testing.assert_array_equal(center_crop(img, 32), center_view(str(path), 32))


def test_predict_files_folder_and_bad_file(images, r20_file):
    paths = [str(images / "a.jpg"), str(images / "e.jpg")]
    results = predict(r20_file, [*paths, images], top=3, batch_size=2)
    assert len(results) == 2 + 5
    bad = [r for r in results if "error" in r]
    assert [r["path"] for r in bad] == [paths[1], paths[1]]
    good = [r for r in results if "top" in r]
    assert len(good) == 5
    for r in good:
        assert len(r["top"]) == 3 and r["top"][0]["label"].startswith("class_")
        probs = [t["prob"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # The same image gives the same answer wherever it sits in a batch.
    first, again = results[0]["top"], results[2]["top"]
    assert [t["index"] for t in first] == [t["index"] for t in again]
    assert [t["prob"] for t in first] == pytest.approx([t["prob"] for t in again], abs=1e-5)


def test_predict_pil_and_module(images):
    model = _randomised("resnet20")
    with Image.open(images / "c.png") as img:
        out = predict(model, [img, str(images / "c.png")], top=1)
    assert out[0]["path"] == "<image 0>"
    assert out[0]["top"][0]["index"] == out[1]["top"][0]["index"]


def test_predict_run_folder_uses_its_classes_and_normalization(images, tmp_path):
    model = _randomised("resnet20", num_classes=3)
    norm = {"kind": "pixel-mean", "mean": torch.rand(3, 32, 32).tolist(), "std": [0.25]}
    ckpt = {
        "format": "reslab-checkpoint",
        "model": model.state_dict(),
        "model_args": model.build_args,
        "classes": ["cat", "dog", "emu"],
        "normalization": norm,
        "image_size": 32,
    }
    (tmp_path / "run/checkpoints").mkdir(parents=True)
    torch.save(ckpt, tmp_path / "run/checkpoints/best.pt")
    (r,) = predict(tmp_path / "run", [images / "a.jpg"], top=5)
    assert sorted(t["label"] for t in r["top"]) == ["cat", "dog", "emu"]
    # Same logits as normalising by hand the way the training pipeline does (a CIFAR net
    # sees the whole image: shorter side to 32, no 256/224 margin).
    x = torch.from_numpy(np.array(center_view(str(images / "a.jpg"), 32, 32))).permute(2, 0, 1)
    x = (x.float() / 255 - torch.tensor(norm["mean"])) / 0.25
    with torch.no_grad():
        want = model(x[None]).softmax(1)[0]
    assert abs(r["top"][0]["prob"] - float(want.max())) < 1e-4


def test_plain_imagenet_weights_get_imagenet_names(images, tmp_path):
    path = save_torchvision(create_model("resnet18"), tmp_path / "tv.pth")
    (r,) = predict(path, [images / "b.jpeg"], top=2)
    names = inference.imagenet_classes()
    assert all(t["label"] == names[t["index"]] for t in r["top"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_runs_and_agrees(fmt, r20_file, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out = export(r20_file, fmt, tmp_path / f"m.{fmt}")
    meta = read_export_metadata(out)
    assert meta["image_size"] == 32 and len(meta["classes"]) == 10
    assert meta["normalization"]["kind"] == "channel"
    model = create_model("resnet20", weights=r20_file).eval()
    x = torch.randn(3, 3, 32, 32)  # a batch size never seen at export: the axis is dynamic
    with torch.no_grad():
        want = model(x).numpy()
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        got = ort.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(out))(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_export_that_disagrees_is_deleted(r20_file, tmp_path, monkeypatch):
    monkeypatch.setitem(inference.exports.RUNNERS, "torchscript", lambda path, x: np.zeros((2, 10)))
    out = tmp_path / "bad.pt"
    with pytest.raises(ValueError, match="disagrees"):
        export(r20_file, "torchscript", out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_predict_and_export(images, r20_file, tmp_path, capsys):
    # 1: one of the five files (e.jpg) could not be classified; the others still were.
    assert main(["predict", str(r20_file), str(images), "--top", "2", "--json"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert len(results) == 5 and "e.jpg: error" in captured.err
    assert main(["predict", str(r20_file), str(images / "e.jpg")]) == 1
    out = tmp_path / "m.ts"
    assert main(["export", str(r20_file), "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file()
    # A wrong --arch is a clear error (exit 2), not a traceback.
    assert main(["predict", str(r20_file), str(images), "--arch", "resnet32"]) == 2
    assert "r20.pth" in capsys.readouterr().err
