"""int8 inference (reslab.quantize, export int8=True): agreement with fp32 on real images,
also on the AVX2 code paths of CPUs without VNNI (capped in a child process), the export
round trip, a clear error without torchao, and the benchmark case.

`python tests/test_quantize.py` prints the pt2 agreement check's figures as JSON: the
child that test_int8_agrees_with_fp32[avx2] starts under the ISA cap."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reslab
from reslab.errors import ReslabError
from reslab.inference import export, load_model, load_pt2, normalizer, read_export_metadata
from reslab.inference import int8 as int8_module
from reslab.provenance import ISA_LIMITS

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


def _cifar() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    loaded = load_model("cifar10:resnet20")
    norm = normalizer(loaded.normalization)
    calibration, _ = _grid("cifar10-train-512", 512, 32)
    x, y = _grid("cifar10-val-320", 320, 20)
    return loaded.model, norm(calibration), norm(x), y


@pytest.fixture(scope="module")
def cifar() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shipped ResNet-20, 512 training images to calibrate on and 320 validation
    images (split seed 0: the images its card's validation error was measured on), normalised for it."""
    return _cifar()


def _agreement(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, got) -> dict:
    """How often int8's classes `got` are the fp32 net's: on all of x, and on the images
    the fp32 net is sure of (top-2 softmax margin >= 0.05); correct answers of both."""
    with torch.no_grad():
        p = model(x).softmax(1)
    want, got = p.argmax(1), torch.as_tensor(got)
    top2 = p.topk(2, dim=1).values
    sure = top2[:, 0] - top2[:, 1] >= 0.05
    return {
        "sure": int(sure.sum()),
        "agree_sure": float((want == got)[sure].float().mean()),
        "agree_all": float((want == got).float().mean()),
        "fp32_correct": int((want == y).sum()),
        "int8_correct": int((got == y).sum()),
    }


def _capped_pt2_agreement() -> dict:
    """In a process capped at the AVX2 code paths: the export's automatic choice, and the
    agreement of the .pt2 it writes, loaded and compiled into oneDNN's AVX2 int8 kernels."""
    import tempfile

    model, calibration, x, y = _cifar()
    with tempfile.TemporaryDirectory() as tmp:
        path = export(model, "pt2", Path(tmp) / "r20.pt2", int8=True, calibration=[calibration])
        net = load_pt2(path)
        with torch.no_grad():
            got = net(x).argmax(1)
    return {**_agreement(model, x, y, got), "reduce_range": net.reduce_range}


@needs_torchao
@pytest.mark.parametrize("isa", [None, "avx2"])
def test_int8_agrees_with_fp32(cifar, isa: str | None) -> None:
    """Calibrated on 512 training images, the compiled int8 net picks the fp32 net's
    class for >= 99% of the validation images the fp32 net is sure of (top-2 softmax
    margin >= 0.05: 312 of the 320; 99.7-100% agree as measured) and >= 98% of all 320
    (98.75-99.4% measured; 99.24% on all 5,000: the images that flip are near-ties),
    with about the same accuracy.

    isa "avx2": the .pt2 export, written and run in a child capped at the AVX2 code paths
    of a CPU without VNNI, where 8-bit activations saturated vpmaddubsw's int16 sums
    (93.9% of the sure images agreed); it must choose 7-bit activations by itself."""
    model, calibration, x, y = cifar
    if isa is None:
        int8 = reslab.quantize(model, [calibration])
        with torch.no_grad():
            got = _agreement(model, x, y, int8(x).argmax(1))
    else:
        proc = subprocess.run(
            [sys.executable, __file__],
            env={**os.environ, **ISA_LIMITS[isa]},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = json.loads(proc.stdout.splitlines()[-1])
        assert got["reduce_range"] is True
    assert got["sure"] >= 290
    assert got["agree_sure"] >= 0.99, got
    assert got["agree_all"] >= 0.98, got
    assert abs(got["fp32_correct"] - got["int8_correct"]) <= 3, got


def test_vnni_detection_honours_the_isa_cap(monkeypatch) -> None:
    """7-bit activations exactly where oneDNN's int8 kernels have no VNNI: the CPU lacks it,
    or ONEDNN_MAX_CPU_ISA caps below it (limit_isa("avx2"), or a user's own cap)."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    isa = {"avx2", "avx512f", "avx512_vnni"}
    monkeypatch.setattr(int8_module.provenance, "usable_isa", lambda: isa)
    assert int8_module.has_vnni() and not int8_module.resolve_reduce_range(None)
    for cap in ("AVX2", "avx512_core", "AVX2_VNNI"):  # the last: avx512_vnni is not AVX-VNNI
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert not int8_module.has_vnni() and int8_module.resolve_reduce_range(None), cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert int8_module.has_vnni()
    assert int8_module.resolve_reduce_range(False) is False  # an explicit choice stands
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(int8_module.provenance, "usable_isa", lambda: {"avx2", "avx512f"})
    assert not int8_module.has_vnni() and int8_module.resolve_reduce_range(None)


@needs_torchao
def test_int8_pt2_round_trip(cifar, tmp_path: Path, monkeypatch) -> None:
    model, calibration, x, _ = cifar
    path = export(
        model, "pt2", tmp_path / "r20.pt2", int8=True, calibration=[calibration], reduce_range=False
    )
    meta = read_export_metadata(path)
    assert meta["int8"] is True and meta["image_size"] == 32
    assert meta["int8_reduce_range"] is False
    assert meta["int8_ranges"]["activations_uint8"] == [0, 255]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # carried to a CPU without VNNI
    with pytest.warns(UserWarning, match="can saturate"):
        assert load_pt2(path).reduce_range is False
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert path.stat().st_size < fp32_bytes  # int8 weights only: no fp32 copies, no samples
    program = torch.export.load(str(path)).module()  # torchao's ops are loaded by now
    with torch.no_grad():
        agree = (program(x).argmax(1) == model(x).argmax(1)).float().mean()
        assert program(x[:1]).shape == (1, 10)  # the batch axis is dynamic
    assert agree >= 0.98  # the same program as reslab.quantize's, run as written


@needs_ort
@pytest.mark.parametrize("isa", [None, "avx2"])
def test_int8_onnx_export_runs_in_onnx_runtime(cifar, tmp_path: Path, monkeypatch, isa) -> None:
    """ONNX Runtime picks its kernels by CPUID, whatever the caps: under the AVX2 cap the
    test checks what the file holds. Its weights are 7-bit (-64..64), so no pair of u8 x s8
    products can leave vpmaddubsw's int16 (255 * 64 * 2 < 32767): a CPU without VNNI
    computes exactly what this one does, and the agreement measured here is its own."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    if isa is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", ISA_LIMITS[isa]["ONEDNN_MAX_CPU_ISA"])
    model, calibration, x, y = cifar
    path = export(model, "onnx", tmp_path / "r20.onnx", int8=True, calibration=[calibration])
    meta = read_export_metadata(path)
    assert meta["int8"] is True
    assert meta["int8_reduce_range"] is (isa is not None or not int8_module.has_vnni())
    low, high = meta["int8_ranges"]["weights_int8"]
    assert (low, high) == ((-64, 64) if meta["int8_reduce_range"] else (-127, 127))
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert len(weights) >= 20 and all(low <= w.min() and w.max() <= high for w in weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = _agreement(model, x, y, session.run(None, {"input": x.numpy()})[0].argmax(1))
    assert got["agree_sure"] >= 0.99, got  # 99.7% measured, 8- and 7-bit
    assert got["agree_all"] >= 0.97, got  # min/max calibration: a little looser than PT2E's


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
    with pytest.raises(ValueError, match="int8 export only"):
        export(model, "onnx", tmp_path / "m.onnx", reduce_range=True)
    with pytest.raises(ValueError, match="reduce_range must be True, False or None"):
        reslab.quantize(model, [x], reduce_range="yes")
    assert not list(tmp_path.iterdir())
    if importlib.util.find_spec("torchao") is not None:
        with pytest.raises(ValueError, match="do not fit the network"):
            reslab.quantize(model, [torch.zeros(4, 1, 32, 32)])
        nan = x[:8].clone()
        nan[3, 0, 5, 5] = float("nan")  # was a RuntimeError from torch.histc in an observer
        with pytest.raises(ValueError, match="must be finite: 1 of 8 hold NaN or inf"):
            reslab.quantize(model, [nan])


@needs_torchao
@needs_ort
@pytest.mark.slow
def test_benchmark_int8_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--cases",
            "int8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6. int8 inference" in proc.stdout and "failed" not in proc.stdout, proc.stdout
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    int8 = {r["variant"] for r in rows if r["case"] == "int8"}
    assert {"reslab:int8", "onnxruntime:int8", "onnxruntime"} <= int8
    assert all(r["cpu"] for r in rows if r["case"] == "int8")


def test_cli_export_int8_onnx(tiny_cifar: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Under the AVX2 cap, as on the AVX2-only EPYC whose 8-bit file was refused
    (relative error 0.175 > 0.15), the export chooses 7-bit weights by itself."""
    pytest.importorskip("onnxruntime")
    from reslab.cli import main

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out = tmp_path / "r20-int8.onnx"
    argv = [
        "export",
        "cifar10:resnet20",
        "--format",
        "onnx",
        "--int8",
        "--calibration",
        str(tiny_cifar),
        "--dataset",
        "cifar10",
        "--out",
        str(out),
    ]
    assert main(argv[:4] + ["--reduce-range", "--out", str(out)]) == 2  # without --int8
    assert "int8 export only" in capsys.readouterr().err and not out.exists()
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert out.is_file() and "checked against the fp32 network" in printed
    assert "int8 for any CPU" in printed and read_export_metadata(out)["int8_reduce_range"]
    assert main([*argv[:-1], str(out)]) == 2  # never over a file that is there
    assert "exists" in capsys.readouterr().err


if __name__ == "__main__":
    print(json.dumps(_capped_pt2_agreement()))
