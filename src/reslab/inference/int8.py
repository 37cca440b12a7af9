"""Static post-training int8 quantization for CPU inference (`quantize`).

PyTorch's own maintained path, the PT2E flow: the batch-norm-folded network is captured
with torch.export, observed on a few hundred calibration images by torchao's
X86InductorQuantizer (int8 weights per output channel, uint8 activations per tensor,
the oneDNN recipe), converted to quantize/dequantize pairs around fp32 ops, then
compiled by inductor with freezing, whose torchao patterns turn each
dequantize-conv(-add)(-ReLU)-quantize into one oneDNN int8 convolution (VNNI or AMX
where the CPU has them). torch 2.13 no longer ships the PT2E quantizer itself
(torch.ao.quantization.quantize_pt2e is gone): it lives in torchao, an optional extra.

Without VNNI or AMX, the u8 x s8 dot product goes through vpmaddubsw, which adds pairs
of products into a saturating int16: 255 * 127 * 2 overflows it, and agreement with fp32
fell to ~93% on AVX2-only CPUs. There activations are quantized to 7 bits (0..127,
`reduce_range`), whose pairs fit: `resolve_reduce_range` chooses, `has_vnni` detects.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import Tensor, nn

from .. import provenance
from ..data import DatasetError, build_data
from ..errors import ReslabError, one_line
from .optimize import fold_batchnorm

INSTALL = 'int8 needs torchao: pip install "reslab[int8]" (or pip install torchao)'
CALIBRATION_IMAGES = 512  # ResNet-20, 320 val images: 98.8% agreement from 64, 99.4% from 512


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) that leave its int8 kernels without VNNI.
NO_VNNI_CAPS = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def has_vnni() -> bool:
    """Whether oneDNN's int8 kernels here add u8 x s8 products without saturating: the CPU
    has AVX512-VNNI, AVX-VNNI or AMX-INT8 and ONEDNN_MAX_CPU_ISA does not cap them off."""
    flags = provenance.usable_isa()  # honours limit_isa's caps
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in NO_VNNI_CAPS:
        return False
    if cap.startswith("AVX2_VNNI"):  # the AVX2 kernels with VNNI: avx512_vnni does not count
        return "avx_vnni" in flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def resolve_reduce_range(reduce_range: bool | None) -> bool:
    """7-bit activations? None (auto): yes where this CPU (under any ISA cap) lacks VNNI."""
    if reduce_range is None:
        return not has_vnni()
    if not isinstance(reduce_range, bool):
        raise ValueError(f"reduce_range must be True, False or None (auto), not {reduce_range!r}")
    return reduce_range


def require_torchao() -> None:
    """Raise one readable line, not an ImportError deep in torch, when torchao is absent."""
    if importlib.util.find_spec("torchao") is None:
        raise ReslabError(INSTALL)


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # torchao warns on import about its CUDA-only kernel libraries on a CPU build, and
    # torch about an enum torchao registers: noise for a CPU user, so held back once.
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def load_torchao() -> tuple[Any, Any, Any]:
    """torchao's prepare_pt2e, convert_pt2e and x86 inductor quantizer module (importing
    the quantizer also registers its int8 fusion patterns with inductor)."""
    require_torchao()
    with _quiet_import():
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    return prepare_pt2e, convert_pt2e, xiq


def _images(batches: Iterable[Any]) -> Iterator[Tensor]:
    """Image tensors from tensors, (x, y) loader batches or lists of either."""
    for b in batches:
        x = b[0] if isinstance(b, (tuple, list)) else b
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(
                "calibration batches must be image tensors (B, 3, H, W) or (x, y) pairs"
            )
        yield x


def take_images(batches: Iterable[Any], count: int = CALIBRATION_IMAGES) -> Tensor:
    """The first `count` images of `batches` as one float CPU tensor (N, 3, H, W)."""
    got, n = [], 0
    for x in _images(batches):
        got.append(x[: count - n].float().cpu())
        n += len(got[-1])
        if n >= count:
            break
    if not got:
        raise ValueError("no calibration images: give a few hundred training images")
    images = torch.cat(got).contiguous()
    if not bool(images.isfinite().all()):  # else a torch.histc error deep in an observer
        bad = int((~images.isfinite()).flatten(1).any(1).sum())
        raise ValueError(
            f"calibration images must be finite: {bad} of {len(images)} hold NaN or inf"
        )
    return images


def capture(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    """`model` (batch norm already folded) as an ATen graph with a dynamic batch axis.

    strict=True (TorchDynamo tracing) names every call of a module apart: reslab's blocks
    call one ReLU module twice, and the non-strict tracer files both calls under one
    source, which the quantizer's conv-add-ReLU pattern matcher rejects."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    x = example[:2] if len(example) >= 2 else example.expand(2, -1, -1, -1)  # not 0/1-specialised
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},), strict=True)
    return program.module()


def quantize_graph(
    model: nn.Module,
    calibration: Iterable[Any],
    count: int = CALIBRATION_IMAGES,
    *,
    reduce_range: bool = False,
) -> torch.fx.GraphModule:
    """The int8 program of `model`: BN folded, observed on `count` calibration images,
    converted to quantize/dequantize pairs (runs anywhere, slowly, in fp32 arithmetic;
    `Int8Network` compiles it into int8 kernels). reduce_range: activations 0..127."""
    prepare_pt2e, convert_pt2e, xiq = load_torchao()
    images = take_images(calibration, count)
    folded = fold_batchnorm(_copy_eval(model)).requires_grad_(False)
    quantizer = xiq.X86InductorQuantizer()
    config = xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    quantizer.set_global(config)
    with torch.no_grad():
        try:  # images the network cannot take: one line here, not a trace deep in export
            folded(images[:1])
        except RuntimeError as e:
            raise ValueError(
                f"calibration images of shape {tuple(images.shape[1:])} do not fit the network: {one_line(e)}"
            ) from None
        prepared = prepare_pt2e(capture(folded, images), quantizer)
        for chunk in images.split(64):  # observers record min/max per tensor
            prepared(chunk)
        return _drop_unused_tensors(convert_pt2e(prepared))


def _drop_unused_tensors(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove the parameters the graph no longer reads: convert_pt2e folds each weight
    into an int8 constant but leaves the fp32 original attached, which would stay in
    memory and be saved by torch.export (ResNet-18 .pt2: 81 MB instead of 12)."""
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for name, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(graph.get_submodule(owner), leaf)
    return graph


def _copy_eval(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


class Int8Network(nn.Module):
    """An int8 network for CPU inference. `graph` is the quantized program (what
    `export(..., int8=True)` saves); calls run its inductor compilation with freezing.

    The compilation happens at the first call of each batch size (tens of seconds on a
    small CPU, then cached for the process); inputs are made channels-last, the layout
    the oneDNN int8 kernels work in."""

    def __init__(self, graph: torch.fx.GraphModule, reduce_range: bool | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.reduce_range = reduce_range  # 7-bit activations; None: not recorded
        # Kept out of the module tree so state_dict() has the graph's tensors once.
        self.__dict__["compiled"] = torch.compile(graph)

    def train(self, mode: bool = True) -> Int8Network:
        # An exported program has no train mode (.train() on it raises): the flag only,
        # so that code which calls model.eval() (evaluation, predict) takes this net too.
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:

        # Freezing (weights as constants) is what lets inductor prepack the int8 weights.
        # Patched around the call, where compilation happens, not set process-wide; the
        # per-compile options={"freezing": True} form fails in torch 2.13 (qconv_prepack
        # reaches the fake-tensor pass). cpp_wrapper calls the ~70 kernels from C++, not
        # Python: ResNet-50 at batch 1 spent ~2 ms of ~15 in the Python wrapper, and ran
        # 16-18% faster with it (docs/benchmarks.md, section 6); compiling takes ~10 s more.
        with torch.no_grad(), inductor_config.patch(freezing=True, cpp_wrapper=True):
            return self.compiled(x.contiguous(memory_format=torch.channels_last))


def quantize(
    model: nn.Module,
    calibration: Iterable[Any],
    count: int = CALIBRATION_IMAGES,
    *,
    reduce_range: bool | None = None,
) -> Int8Network:
    """An int8 copy of `model` for CPU inference, calibrated on `calibration`.

    calibration: preprocessed training images as tensors (B, 3, H, W) or (x, y) batches
    (a reslab loader's epoch), of which the first `count` are used; never the images
    the result is evaluated on. Static quantization: activation ranges are fixed by
    these images, so they should look like what the network will see. Needs torchao
    (`pip install "reslab[int8]"`).

    reduce_range: quantize activations to 7 bits (0..127), which CPUs without VNNI need
    to stay accurate; None (the default) decides by this CPU (`has_vnni`).
    """
    reduce_range = resolve_reduce_range(reduce_range)
    graph = quantize_graph(model, calibration, count, reduce_range=reduce_range)
    return Int8Network(graph, reduce_range)


def calibration_batches(
    loaded: Any, data_dir: str | Path, dataset: str | None = None, batch_size: int = 64
) -> Iterator[Tensor]:
    """Unaugmented training images of a loaded run, in a seeded random order (so a
    class-sorted folder still gives every class), preprocessed as the network expects.

    The validation images are carved off exactly as in training (the run's val_size,
    split_seed and limit), so they are never calibrated on: the same carve as
    reslab.evaluation.run.run_data, with augmentation off for the training split."""
    cfg = loaded.config
    dataset = dataset or cfg.get("dataset")
    if not dataset:
        raise ValueError("say which dataset the calibration images are (--dataset)")
    try:
        data = build_data(
            dataset,
            Path(data_dir).expanduser(),
            batch_size=batch_size,
            val_size=cfg.get("val_size", 5000),
            split_seed=cfg.get("split_seed", 0),
            limit=cfg.get("limit"),
            image_size=loaded.image_size,
            augment="none",
            normalization=loaded.normalization,
            workers=cfg.get("workers", 2),
        )
    except DatasetError as e:
        if "fewer than one batch" not in str(e):
            raise
        raise ValueError(
            f"--calibration {data_dir}: too few images to calibrate on, after the run's "
            f"held-out validation images are set aside ({e}); int8 calibration needs at "
            f"least {batch_size} (a few hundred is better)"
        ) from None
    return (x for x, _ in data.train.epoch(0))
