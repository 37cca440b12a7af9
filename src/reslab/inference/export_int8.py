"""The int8 export formats, beside exports.py's fp32 ones.

- "pt2": the PT2E int8 program (`quantize_graph`) saved with torch.export: the same
  graph `reslab.quantize` runs, so its accuracy is the one measured in
  docs/results/int8; `load_pt2` reads it back and compiles it into oneDNN int8 kernels.
  Needs torch and torchao where it runs, nothing else.
- "onnx": an ONNX QDQ file by ONNX Runtime's own static quantizer (quantize_static,
  int8 weights per channel, uint8 activations, min/max calibration) from the fp32 ONNX
  export and the same calibration images: for deployments that run ONNX Runtime.

With reduce_range (chosen where the exporting CPU lacks VNNI, see int8.has_vnni), one
operand of each u8 x s8 product gets 7 bits, so that vpmaddubsw's int16 pair sums cannot
saturate on a CPU without VNNI: the activations in pt2 (the x86 inductor quantizer's
reduce_range), the weights in ONNX (ONNX Runtime's reduce_range, its documented cure).
The metadata records which, since a file made on one CPU may run on another.
"""

from __future__ import annotations

import json
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .int8 import Int8Network, has_vnni, load_torchao

# The largest relative error ||int8 - fp32|| / ||fp32|| of the logits an int8 file may
# have on calibration images before export refuses it. Measured: 0.01-0.02 for random
# ResNet-18/50 weights, ~0.05 for the shipped CIFAR nets; a broken file is near 1.
INT8_MAX_RELATIVE_ERROR = 0.15


def int8_metadata(fmt: str, reduce_range: bool) -> dict[str, Any]:
    """The integer ranges an int8 file of `fmt` holds, for its metadata: which operand
    reduce_range narrowed to 7 bits, and so on which CPUs its int8 kernels stay exact."""
    activations, weights = [0, 255], [-128, 127] if fmt == "pt2" else [-127, 127]
    if reduce_range and fmt == "pt2":
        activations = [0, 127]
    elif reduce_range:
        weights = [-64, 64]
    return {
        "int8_reduce_range": reduce_range,
        "int8_ranges": {"activations_uint8": activations, "weights_int8": weights},
        "int8_runs_on": "any CPU"
        if reduce_range
        else "CPUs with VNNI or AMX-INT8 (on AVX2-only ones its int16 pair sums can saturate)",
    }


def write_pt2(model: nn.Module, example: Tensor, path: Path, meta: str) -> None:
    """`model` (a folded fp32 net or an int8 graph) as a torch.export program with a
    dynamic batch axis and reslab's metadata as the extra file reslab.json."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    x = example[:2].clone()  # a view would save the whole calibration tensor in the file
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path), extra_files={"reslab.json": meta})


def read_pt2_metadata(path: str | Path) -> dict[str, Any]:
    """reslab.json of a .pt2, read from the zip archive directly: deserialising the
    program would need torchao loaded first when it is int8."""
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith("extra/reslab.json")), None)
        if name is None:
            raise ValueError(f"{path}: not a .pt2 file written by reslab export")
        return json.loads(z.read(name))


def load_pt2(path: str | Path) -> nn.Module:
    """A .pt2 written by `export(..., fmt="pt2")`, ready to call: an int8 program is
    compiled into int8 kernels at its first call (needs torchao); fp32 runs as exported."""
    meta = read_pt2_metadata(path)
    if not meta.get("int8"):
        return torch.export.load(str(path)).module()
    reduce_range = meta.get("int8_reduce_range")  # None: written before it was recorded
    if not reduce_range and not has_vnni():
        warnings.warn(
            f"{path}: int8 with 8-bit activations, made for CPUs with VNNI; this one has none, "
            "so its int8 sums can saturate (re-export it here, or with reduce_range=True)",
            stacklevel=2,
        )
    load_torchao()  # registers the quantize/dequantize ops the program is written in
    return Int8Network(torch.export.load(str(path)).module(), reduce_range)


def write_onnx_int8(
    fp32_onnx: Path, images: Tensor, path: Path, meta: str, reduce_range: bool = False
) -> None:
    """ONNX Runtime's static QDQ quantization of an fp32 ONNX file, calibrated on `images`
    (reduce_range: 7-bit weights, as ONNX Runtime recommends for CPUs without VNNI)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images.split(32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x.contiguous().numpy()}

    with tempfile.TemporaryDirectory() as tmp:
        # ONNX Runtime's documented first step: shape inference and graph optimisation.
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        quantize_static(
            str(pre),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "reslab", meta
    onnx.save(proto, str(path))


def check_int8(got: np.ndarray, want: np.ndarray, fmt: str) -> None:
    """Refuse an int8 file whose logits are far from the fp32 network's (see the limit)."""
    rel = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
    if got.shape != want.shape or not rel <= INT8_MAX_RELATIVE_ERROR:
        raise ValueError(
            f"int8 {fmt} file disagrees with the fp32 network: relative error {rel:.3f} > "
            f"{INT8_MAX_RELATIVE_ERROR}, shape {got.shape} vs {want.shape}; file deleted"
        )
