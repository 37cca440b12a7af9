"""Export a network to ONNX or TorchScript (BN folded, dynamic batch), checked against
PyTorch on a random batch before the file is kept."""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..storage.files import check_target
from .load import load_model
from .optimize import fold_batchnorm

# ONNX opsets the TorchScript-based exporter writes for these networks.
OPSETS = (9, 20)


def export(
    model_or_path: nn.Module | str | Path,
    fmt: str,
    out: str | Path,
    arch: str | None = None,
    opset: int = 17,
    atol: float = 1e-3,
) -> Path:
    """Write a batch-norm-folded ONNX or TorchScript file with a dynamic batch axis,
    its class names and preprocessing in the file's metadata, then run the file on a
    batch of 2 and compare with PyTorch; a file that disagrees is deleted and an error raised."""
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be 'onnx' or 'torchscript', not {fmt!r}")
    if fmt == "onnx" and not OPSETS[0] <= opset <= OPSETS[1]:
        raise ValueError(f"--opset {opset} is not supported; choose {OPSETS[0]}..{OPSETS[1]}")
    out = check_target(out)  # refuse /dev/null, folders, links before any work
    loaded = load_model(model_or_path, arch)
    reference = loaded.model.eval()
    folded = fold_batchnorm(copy.deepcopy(reference)).requires_grad_(False)
    s = loaded.image_size
    meta = json.dumps({
        "format": "reslab-export",
        "model": loaded.name,
        "classes": loaded.classes,
        "normalization": loaded.normalization,
        "image_size": s,
        "resize_shorter_side": loaded.resize_shorter_side,
        "input": f"float32 (batch, 3, {s}, {s}), RGB, normalised as in 'normalization'",
        "output": "logits (batch, num_classes)",
    })  # fmt: skip
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create {out.parent}: {e.strerror or e}") from None
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        (_export_onnx if fmt == "onnx" else _export_torchscript)(folded, s, tmp, meta, opset)
        x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            want = reference(x).numpy()
        got = _run_onnx(tmp, x) if fmt == "onnx" else _run_torchscript(tmp, x)
        if got is not None:
            diff = float(np.abs(got - want).max())
            if got.shape != want.shape or not diff <= atol:
                raise ValueError(
                    f"exported {fmt} file disagrees with PyTorch: max |diff| {diff:.2e} > {atol}, shape {got.shape} vs {want.shape}; file deleted"
                )
        check_target(out)  # still a regular file or nothing
        os.replace(tmp, out)
    except PermissionError as e:
        raise ValueError(f"cannot write {out}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _export_onnx(model: nn.Module, size: int, path: Path, meta: str, opset: int) -> None:
    import onnx

    x = torch.randn(1, 3, size, size)
    # The TorchScript-based exporter: dynamo=True needs onnxscript and gains nothing for a convnet.
    with warnings.catch_warnings():
        # Option A's strided channel slicing is not constant-folded; harmless, and noisy.
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "reslab", meta
    onnx.save(proto, str(path))


def _export_torchscript(model: nn.Module, size: int, path: Path, meta: str, opset: int) -> None:
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"reslab.json": meta})


def _run_onnx(path: Path, x: Tensor) -> np.ndarray | None:
    try:
        import onnxruntime as ort
    except ImportError:
        print(
            f"note: onnxruntime is not installed; {path.name} was not test-run (pip install onnxruntime)"
        )
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def _run_torchscript(path: Path, x: Tensor) -> np.ndarray:
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return module(x).numpy()


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The reslab metadata (classes, normalization, image_size) of an exported file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return json.loads(props["reslab"])
    files = {"reslab.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files["reslab.json"])
