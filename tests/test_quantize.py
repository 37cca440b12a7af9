"""int8 inference (reslab.quantize, export int8=True): agreement with fp32 on real images,
the export round trip, a clear error without torchao, and the benchmark case."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reslab
from reslab.errors import ReslabError
from reslab.inference import export, load_model, normalizer, read_export_metadata
from reslab.inference import int8 as int8_module

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason='needs torchao (pip install "reslab[int8]")'
)
needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime (reslab[onnx])"
)


def _grid(name: str, n: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n CIFAR-10 images (uint8 (n, 3, 32, 32)) and labels from a JPEG grid of `cols`
    columns, as `python studies/int8.py --cifar-dir DIR --write-test-images` wrote them."""
    grid = torch.from_numpy(np.asarray(Image.open(DATA / f"{name}.jpg").convert("RGB")))
    x = grid.reshape(n // cols, 32, cols, 32, 3).permute(0, 2, 4, 1, 3).reshape(n, 3, 32, 32)
    y = torch.tensor([int(c) for c in (DATA / f"{name}.txt").read_text().strip()])
    return x, y


@pytest.fixture(scope="module")
def cifar() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shipped ResNet-20, 512 training images to calibrate on and 320 validation
    images (split seed 0: the images its card's validation error was measured on), normalised for it."""
    loaded = load_model("cifar10:resnet20")
    norm = normalizer(loaded.normalization)
    calibration, _ = _grid("cifar10-train-512", 512, 32)
    x, y = _grid("cifar10-val-320", 320, 20)
    return loaded.model, norm(calibration), norm(x), y


@needs_torchao
def test_int8_agrees_with_fp32(cifar) -> None:
    """Calibrated on 512 training images, the compiled int8 net picks the fp32 net's
    class for >= 99% of the validation images the fp32 net is sure of (top-2 softmax
    margin >= 0.05: 307 of the 320, all agree as measured) and >= 98% of all 320 (98.75%
    measured; 99.24% on all 5,000: the images that flip are near-ties, margins < 0.04),
    with about the same accuracy."""
    model, calibration, x, y = cifar
    int8 = reslab.quantize(model, [calibration])
    with torch.no_grad():
        p, got = model(x).softmax(1), int8(x).argmax(1)
    want = p.argmax(1)
    top2 = p.topk(2, dim=1).values
    sure = top2[:, 0] - top2[:, 1] >= 0.05
    assert sure.sum() >= 290
    assert (want == got)[sure].float().mean() >= 0.99
    assert (want == got).float().mean() >= 0.98
    assert abs((want == y).sum() - (got == y).sum()) <= 3


@needs_torchao
def test_int8_pt2_round_trip(cifar, tmp_path: Path) -> None:
    model, calibration, x, _ = cifar
    path = export(model, "pt2", tmp_path / "r20.pt2", int8=True, calibration=[calibration])
    meta = read_export_metadata(path)
    assert meta["int8"] is True and meta["image_size"] == 32
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert path.stat().st_size < fp32_bytes  # int8 weights only: no fp32 copies, no samples
    program = torch.export.load(str(path)).module()  # torchao's ops are loaded by now
    with torch.no_grad():
        agree = (program(x).argmax(1) == model(x).argmax(1)).float().mean()
        assert program(x[:1]).shape == (1, 10)  # the batch axis is dynamic
    assert agree >= 0.98  # the same program as reslab.quantize's, run as written


@needs_ort
def test_int8_onnx_export_runs_in_onnx_runtime(cifar, tmp_path: Path) -> None:
    import onnxruntime as ort

    model, calibration, x, _ = cifar
    path = export(model, "onnx", tmp_path / "r20.onnx", int8=True, calibration=[calibration])
    assert read_export_metadata(path)["int8"] is True
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0].argmax(1)
    with torch.no_grad():
        want = model(x).argmax(1).numpy()
    assert (got == want).mean() >= 0.97  # min/max calibration: a little looser than PT2E's


def test_missing_torchao_is_one_clear_line(cifar, monkeypatch, tmp_path: Path) -> None:
    model, _, x, _ = cifar
    real = importlib.util.find_spec
    monkeypatch.setattr(
        int8_module.importlib.util,
        "find_spec",
        lambda n, *a: None if n == "torchao" else real(n, *a),
    )
    with pytest.raises(ReslabError, match=r"pip install .*torchao"):
        reslab.quantize(model, [x[:8]])
    with pytest.raises(ReslabError, match="torchao"):
        export(model, "pt2", tmp_path / "m.pt2", int8=True, calibration=[x[:8]])


def test_int8_bad_requests_say_what_to_do(cifar, tmp_path: Path) -> None:
    model, _, x, _ = cifar
    with pytest.raises(ValueError, match="pt2 or onnx"):
        export(model, "torchscript", tmp_path / "m.ts", int8=True, calibration=[x])
    with pytest.raises(ValueError, match="calibration images"):
        export(model, "onnx", tmp_path / "m.onnx", int8=True)
    with pytest.raises(ValueError, match="image tensors"):
        int8_module.take_images([torch.zeros(3, 32, 32)])
    if importlib.util.find_spec("torchao") is not None:
        with pytest.raises(ValueError, match="do not fit the network"):
            reslab.quantize(model, [torch.zeros(4, 1, 32, 32)])


@needs_torchao
@needs_ort
@pytest.mark.slow
def test_benchmark_int8_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--cases", "int8",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6. int8 inference" in proc.stdout and "failed" not in proc.stdout, proc.stdout
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    int8 = {r["variant"] for r in rows if r["case"] == "int8"}
    assert {"reslab:int8", "onnxruntime:int8", "onnxruntime"} <= int8
    assert all(r["cpu"] for r in rows if r["case"] == "int8")


def test_cli_export_int8_onnx(tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from reslab.cli import main

    out = tmp_path / "r20-int8.onnx"
    argv = ["export", "cifar10:resnet20", "--format", "onnx", "--int8", "--calibration",
            str(tiny_cifar), "--dataset", "cifar10", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and "checked against the fp32 network" in capsys.readouterr().out
    assert main([*argv[:-1], str(out)]) == 2  # never over a file that is there
    assert "exists" in capsys.readouterr().err
