"""Export a network to ONNX, TorchScript or torch.export (BN folded, dynamic batch; int8
optionally), checked against PyTorch before the file is kept."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.build import KINDS
from ..data.sources import is_archive
from ..errors import ReslabError
from ..storage.files import check_target
from .export_int8 import (
    check_int8,
    int8_metadata,
    read_pt2_metadata,
    write_onnx_int8,
    write_pt2,
)
from .int8 import (
    calibration_batches,
    load_torchao,
    quantize_graph,
    require_torchao,
    resolve_reduce_range,
    take_images,
)
from .load import Loaded, load_model
from .optimize import fold_batchnorm

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}  # torch.export.save wants .pt2
# ONNX opsets the TorchScript-based exporter writes for every registered network (torch
# 2.13): the CIFAR nets' option-A shortcuts slice channels with a step, which ONNX's
# Slice takes from opset 10 on (9 fails: "step!=1 is currently not supported").
OPSETS = (10, 20)


def _check_options(
    fmt: str,
    opset: int | None,
    int8: bool,
    calibration: Any,
    dataset: str | None,
    reduce_range: bool | None,
) -> tuple[int, bool | None]:
    """export()'s options checked together before any work: (opset, reduce_range)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if int8 and fmt == "torchscript":
        raise ValueError("int8 export writes format pt2 or onnx, not torchscript")
    if fmt != "onnx" and opset is not None:
        raise ValueError(f"--opset {opset} is for --format onnx only, not {fmt}")
    opset = 17 if opset is None else opset
    if fmt == "onnx" and not OPSETS[0] <= opset <= OPSETS[1]:
        raise ValueError(f"--opset {opset} is not supported; choose {OPSETS[0]}..{OPSETS[1]}")
    for flag, value in (("--calibration", calibration), ("--dataset", dataset)):
        if value is not None and not int8:
            raise ValueError(f"{flag} {value} goes with --int8 (it calibrates the int8 network)")
    if dataset is not None and dataset.lower() not in KINDS:
        raise ValueError(f"--dataset {dataset!r}: choose one of {', '.join(sorted(KINDS))}")
    if reduce_range is not None and not int8:
        raise ValueError("reduce_range applies to int8 export only (int8=True, --int8)")
    reduce_range = resolve_reduce_range(reduce_range) if int8 else None
    if int8 and fmt == "pt2":
        require_torchao()
    if int8 and fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise ReslabError('int8 ONNX export needs onnxruntime: pip install "reslab[onnx]"')
    return opset, reduce_range


def export(
    model_or_path: nn.Module | str | Path,
    fmt: str,
    out: str | Path,
    arch: str | None = None,
    opset: int | None = None,  # ONNX only; None: 17
    atol: float = 1e-3,
    *,
    int8: bool = False,
    calibration: str | Path | Iterable[Any] | None = None,
    dataset: str | None = None,
    reduce_range: bool | None = None,
) -> Path:
    """Write a batch-norm-folded ONNX, TorchScript or torch.export (.pt2) file with a
    dynamic batch axis, its class names and preprocessing in the file's metadata, then run
    the file and compare with PyTorch; a file that disagrees is deleted and an error raised.

    int8=True writes a statically quantized network, calibrated on `calibration`: a
    dataset folder (its training split, the run's validation images held out; `dataset`
    names its kind when the model does not) or preprocessed image batches. fmt "pt2" is
    the PT2E program `reslab.quantize` runs (load it with `load_pt2`; needs torchao),
    "onnx" ONNX Runtime's QDQ quantization of the fp32 export. It is checked on
    calibration images against the fp32 network (export_int8.INT8_MAX_RELATIVE_ERROR).
    reduce_range: 7-bit activations (pt2) or weights (onnx), which CPUs without VNNI need
    to stay accurate; None (auto) decides by this CPU, True/False for another one."""
    opset, reduce_range = _check_options(fmt, opset, int8, calibration, dataset, reduce_range)
    out = check_target(out)  # refuse /dev/null, folders, links before any work
    loaded = load_model(model_or_path, arch)
    recorded = loaded.config.get("dataset")
    if dataset is not None and recorded and dataset.lower() != recorded:
        raise ValueError(f"--dataset {dataset} conflicts with the model, trained on {recorded}")
    reference = loaded.model.eval()
    folded = fold_batchnorm(copy.deepcopy(reference)).requires_grad_(False)
    s = loaded.image_size
    meta = json.dumps(
        {
            "format": "reslab-export",
            "model": loaded.name,
            "classes": loaded.classes,
            "normalization": loaded.normalization,
            "image_size": s,
            "resize_shorter_side": loaded.resize_shorter_side,
            "input": f"float32 (batch, 3, {s}, {s}), RGB, normalised as in 'normalization'",
            "output": "logits (batch, num_classes)",
            "int8": int8,
            **(int8_metadata(fmt, reduce_range) if int8 else {}),
        }
    )
    images = _calibration_images(loaded, calibration, dataset) if int8 else None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create {out.parent}: {e.strerror or e}") from None
    # Short, whatever the length of out's name (a legal 255-byte name plus a prefix is not)
    tmp = out.with_name(f".reslab-{uuid.uuid4().hex[:8]}{SUFFIXES[fmt]}")
    try:
        _write(fmt, folded, images, tmp, meta, opset, s, bool(reduce_range))
        # int8 is judged on real images: on noise its error says little.
        x = (
            images[:8]
            if images is not None
            else torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
        )
        with torch.inference_mode():
            want = reference(x).numpy()
        got = RUNNERS[fmt](tmp, x)
        if got is not None and int8:
            check_int8(got, want, fmt)
        elif got is not None:
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


def _calibration_images(loaded: Loaded, calibration: Any, dataset: str | None) -> Tensor:
    """The images an int8 export is calibrated on: given batches, a dataset folder, or
    (for a run) the folder it was trained on."""
    if calibration is None:
        calibration = loaded.config.get("data_dir")
        if calibration is None:
            raise ValueError(
                "int8 export needs calibration images: a dataset folder of training images (--calibration DIR)"
            )
    if isinstance(calibration, (str, Path)):
        where = Path(calibration).expanduser()
        if not where.exists():
            raise FileNotFoundError(f"--calibration {where}: no such folder")
        if not where.is_dir() and not is_archive(where):
            raise ValueError(f"--calibration {where} is a file, not a dataset folder or archive")
        calibration = calibration_batches(loaded, calibration, dataset)
    return take_images(calibration)


def _write(
    fmt: str,
    folded: nn.Module,
    images: Tensor | None,
    path: Path,
    meta: str,
    opset: int,
    size: int,
    reduce_range: bool,
) -> None:
    """One file of `fmt`: fp32 from the folded net, int8 when calibration images are given."""
    if fmt == "torchscript":
        _export_torchscript(folded, size, path, meta, opset)
    elif fmt == "pt2" and images is None:
        write_pt2(folded, torch.randn(2, 3, size, size), path, meta)
    elif fmt == "pt2":
        write_pt2(quantize_graph(folded, [images], reduce_range=reduce_range), images, path, meta)
    elif images is None:
        _export_onnx(folded, size, path, meta, opset)
    else:
        fp32 = path.with_name(path.name + ".fp32")
        try:
            _export_onnx(folded, size, fp32, meta, opset)
            write_onnx_int8(fp32, images, path, meta, reduce_range)
        finally:
            fp32.unlink(missing_ok=True)


def _export_onnx(model: nn.Module, size: int, path: Path, meta: str, opset: int) -> None:
    import onnx

    x = torch.randn(1, 3, size, size)
    # The TorchScript-based exporter: dynamo=True needs onnxscript and gains nothing for a convnet.
    with warnings.catch_warnings():
        # Option A's strided channel slicing is not constant-folded; harmless, and noisy.
        warnings.filterwarnings("ignore", message="Constant folding")
        # The legacy exporter is chosen on purpose (above): its deprecation notices are not
        # for reslab's users.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
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


def _run_pt2(path: Path, x: Tensor) -> np.ndarray:
    # The program as written (int8: quantize/dequantize in fp32 arithmetic, which is
    # what inductor's int8 kernels compute), without minutes of compilation.
    if read_pt2_metadata(path).get("int8"):
        load_torchao()
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return module(x).numpy()


RUNNERS = {"onnx": _run_onnx, "torchscript": _run_torchscript, "pt2": _run_pt2}


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The reslab metadata (classes, normalization, image_size, int8) of an exported file."""
    path = Path(path)
    if path.suffix == ".pt2":
        return read_pt2_metadata(path)
    if path.suffix == ".onnx":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return json.loads(props["reslab"])
    files = {"reslab.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files["reslab.json"])
