"""Use a trained network: fold it for speed, classify image files, export to ONNX/TorchScript.

Everything accepts a model or a path: a run folder, a reslab checkpoint, or a
plain state dict (torchvision/timm/.safetensors) whose architecture is inferred
from its parameter names and shapes. Plain 1000-class files get the ImageNet
class names and the evaluation transform that comes with torchvision's weights.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .data.augment import Normalizer, center_view, scaled
from .weights import (
    IMAGENET_IMAGE_SIZE,
    IMAGENET_NORMALIZATION,
    imagenet_classes,
    infer_architecture,
    load_state_dict_checked,
    read_weights,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
MODES = ("auto", "fold", "onednn", "jit", "compile")
# mode="auto" is "onednn" on CPU and "fold" elsewhere. Measured on this 2-core CPU at
# 224 px, median ms, round-robin in one process (docs/benchmarks.md has the full runs):
# resnet18 batch 1: ONNX Runtime 12.96 / onednn 13.46 / compile 15.48 / jit 17.65;
# resnet50 batch 1: 30.34 / 31.46 / 35.57; resnet50 batch 32: 855 / 890 / 927.


@dataclass
class Loaded:
    """A network in eval mode and what is needed to feed it a new image."""

    model: nn.Module
    classes: list[str]
    normalization: dict[str, Any]  # see reslab.data.augment.Normalizer.to_dict
    image_size: int  # centre crop, pixels; the shorter side is first resized to 256/224 of it
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # a reslab run's config, else {}
    recorded_classes: bool = False  # classes came from the checkpoint, not a default list


# ---------------------------------------------------------------------------- loading


def load_model(model_or_path: nn.Module | str | Path, arch: str | None = None) -> Loaded:
    """A model with its classes and preprocessing, from a module, run folder or weights file.

    A bare module or plain state dict carries no preprocessing: it gets the ImageNet
    transform (and, with 1000 classes, the ImageNet names), the only one published
    with such weights. Run folders and reslab checkpoints use what they recorded.
    """
    from .models import create_model
    from .training.checkpoint import resolve

    if isinstance(model_or_path, nn.Module):
        model = model_or_path
        spec = getattr(model, "spec", None)
        k = int(getattr(spec, "num_classes", 0) or getattr(model, "num_classes", 0))
        size = int(getattr(spec, "input_size", IMAGENET_IMAGE_SIZE))
        return Loaded(model.eval(), _default_classes(k), dict(IMAGENET_NORMALIZATION), size,
                      getattr(spec, "name", type(model).__name__))  # fmt: skip
    file = resolve(model_or_path)
    weights = read_weights(file)
    ckpt = weights.checkpoint
    if ckpt.get("model_args"):  # a reslab checkpoint knows how it was built and fed
        args = dict(ckpt["model_args"])
        args.pop("grad_checkpointing", None)
        model = create_model(**args)
    else:
        args = _plain_args(weights.state_dict, arch, file)
        model = create_model(**args)
    load_state_dict_checked(model, weights.state_dict, file)
    k = model.spec.num_classes
    classes = list(ckpt.get("classes") or _default_classes(k))
    if len(classes) != k:
        raise ValueError(f"{file}: {len(classes)} class names for a {k}-way classifier")
    # A plain state dict carries no preprocessing: the ImageNet transform is the only
    # one published with such weights, so it is the one we assume.
    norm = ckpt.get("normalization") or dict(IMAGENET_NORMALIZATION)
    size = int(
        ckpt.get("image_size")
        or (IMAGENET_IMAGE_SIZE if model.spec.family == "imagenet" else model.spec.input_size)
    )
    return Loaded(model.eval(), classes, norm, size, model.spec.name,
                  dict(ckpt.get("config") or {}), bool(ckpt.get("classes")))  # fmt: skip


def _plain_args(state: dict[str, Tensor], arch: str | None, file: Path) -> dict[str, Any]:
    k = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
    if arch is not None:
        return {"name": arch, "num_classes": k}
    guess = infer_architecture(state)
    if guess is None:
        raise ValueError(
            f"{file}: cannot tell which registered network these weights are for; pass arch=NAME (--arch)"
        )
    return {"name": guess[0], **guess[1]}


def _default_classes(k: int) -> list[str]:
    return imagenet_classes() if k == 1000 else [f"class_{i}" for i in range(k)]


# ---------------------------------------------------------------------------- optimisation


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BN into the conv before it (in place); the BN becomes Identity.

    conv then BN is y = g (Wx - mu) / sqrt(var + eps) + b, itself a convolution with
    W' = W g / sqrt(var + eps) and bias b - mu g / sqrt(var + eps): one op instead of two.
    Pairs are found by name (convK/bnK in stems and blocks, [conv, BN] in downsample).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in list(model.modules()):
        children = dict(module.named_children())
        pairs = [(n, "bn" + n[4:]) for n in children if n.startswith("conv")]
        if isinstance(module, nn.Sequential):
            pairs += [(str(i), str(i + 1)) for i in range(len(module) - 1)]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and (_positive_scale(bn) or not _pool_between(module))
            ):
                setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
                setattr(module, bn_name, nn.Identity())
    return model


def _pool_between(module: nn.Module) -> bool:
    return getattr(module, "max_pool_between_conv_and_bn", False)


def _positive_scale(bn: nn.BatchNorm2d) -> bool:
    """max(s*x + t) = s*max(x) + t only for s > 0: the fold may cross a max-pool then."""
    return bn.weight is None or bool((bn.weight > 0).all())


class OneDNNGraph(nn.Module):
    """A frozen TorchScript trace run with oneDNN Graph fusion (LLGA) switched on.

    The switch is process-wide in PyTorch, so it is turned on only for the length of each
    call (TorchScript fuses when it optimises a graph for a new input shape, during a
    call): other TorchScript modules in the process are left as they were. `eager` is
    the folded module the trace was taken from (forward_features etc.).
    """

    def __init__(self, folded: nn.Module, example: Tensor) -> None:
        super().__init__()
        self.eager = folded
        with warnings.catch_warnings():  # TorchScript is deprecated from torch 2.13; if it
            warnings.simplefilter("ignore", DeprecationWarning)  # goes, we fall back to fold
            self.graph = torch.jit.freeze(torch.jit.trace(folded, example, check_trace=False))
        for _ in range(3):  # the profiling executor fuses on the second call of a shape
            self(example)

    def forward(self, x: Tensor) -> Tensor:
        before = torch._C._jit_llga_enabled()
        torch.jit.enable_onednn_fusion(True)
        try:
            return self.graph(x.contiguous(memory_format=torch.channels_last))
        finally:
            torch.jit.enable_onednn_fusion(before)


def optimize_for_inference(
    model: nn.Module, example_input: Tensor | None = None, mode: str = "auto"
) -> nn.Module:
    """A copy of `model` for fast inference with the same outputs as `model.eval()`.

    Always: eval mode, batch norm folded into the convolutions, no gradients, channels-last
    weights ("fold": ~1.3-1.7x faster than eager on CPU for resnet18).
    mode "onednn" (the "auto" choice on CPU; "fold" on other devices) then traces and
    freezes it to TorchScript and runs it through oneDNN Graph, which fuses each
    conv(+add)(+ReLU) into one compiled partition: the fastest path measured on CPU, within
    a few percent of ONNX Runtime (docs/benchmarks.md). A new input shape re-profiles:
    its first two calls are slow. "jit" instead applies TorchScript's
    optimize_for_inference (oneDNN-prepacked convolutions, NCHW); "compile" wraps the
    folded net in torch.compile (slow first call; needs a C++ compiler on CPU).
    Any failure falls back to folded eager, with a warning: this function never raises
    for a valid model.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    folded.requires_grad_(False)
    folded = folded.to(memory_format=torch.channels_last)
    device = next(folded.parameters()).device
    if mode == "auto":
        mode = "onednn" if device.type == "cpu" else "fold"
    if mode == "fold":
        return folded
    if example_input is None:
        size = int(getattr(getattr(model, "spec", None), "input_size", IMAGENET_IMAGE_SIZE))
        example_input = torch.randn(1, 3, size, size)
    x = example_input.to(device).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():  # not inference_mode: its tensors cannot be frozen into a graph
            if mode == "jit":
                # Measured (docs/benchmarks.md): TorchScript's optimize_for_inference, which
                # prepacks convolutions for oneDNN, runs faster on NCHW than channels-last.
                folded = folded.to(memory_format=torch.contiguous_format)
                x = x.contiguous()
                traced = torch.jit.freeze(torch.jit.trace(folded, x, check_trace=False))
                fast = torch.jit.optimize_for_inference(traced)
            elif mode == "onednn":
                fast = OneDNNGraph(folded, x)
            else:
                import torch._inductor.config as inductor_config

                # Freezing treats the weights as constants: inductor folds them and prepacks
                # convolutions for oneDNN. It only applies to graphs compiled without
                # gradients, so training compiles in this process are not affected.
                inductor_config.freezing = True
                fast = torch.compile(folded)
            # A backend that runs but computes something else must not slip through.
            want, got = folded(x), fast(x)
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"outputs differ by {(got - want).abs().max():.2e}")
        return fast
    except Exception as e:  # noqa: BLE001 - any backend failure: the folded eager net still works
        warnings.warn(
            f"optimize_for_inference: mode {mode!r} failed ({e}); using folded eager", stacklevel=2
        )
        return folded


# ---------------------------------------------------------------------------- prediction


def normalizer(norm: dict[str, Any]) -> Normalizer:
    """The training pipeline's Normalizer rebuilt from its JSON form."""
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    if mean.ndim == 1:  # per channel, stored as (3,)
        mean = mean.reshape(-1, 1, 1)
    return Normalizer(norm["kind"], mean, torch.tensor(norm["std"], dtype=torch.float32))


def center_crop(image: Image.Image, image_size: int) -> np.ndarray:
    """(S, S, 3) uint8: the evaluation view of a decoded image (same arithmetic as
    reslab.data.augment.center_view, which works from a file): shorter side to
    round(256 * S / 224) with bilinear resampling, then the centre S x S."""
    img = image.convert("RGB")
    short = scaled(256, image_size)
    w, h = img.size
    if min(w, h) != short:
        s = short / min(w, h)
        img = img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)
    w, h = img.size
    top, left = (h - image_size) // 2, (w - image_size) // 2
    return np.asarray(img.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


def expand_images(items: Sequence[str | Path | Image.Image]) -> list[str | Image.Image]:
    """Folders become their image files (recursively, sorted); files and images pass through."""
    out: list[str | Image.Image] = []
    for item in items:
        if isinstance(item, Image.Image):
            out.append(item)
        elif Path(item).is_dir():
            out += sorted(
                str(p) for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            out.append(str(item))
    return out


def predict(
    model_or_path: nn.Module | str | Path,
    images: Sequence[str | Path | Image.Image],
    top: int = 5,
    batch_size: int = 32,
    arch: str | None = None,
) -> list[dict[str, Any]]:
    """Classify images: per image {"path", "top": [{"label", "index", "prob"}, ...]}, or
    {"path", "error"} for a file that cannot be decoded (the others are still classified)."""
    loaded = load_model(model_or_path, arch)
    net = optimize_for_inference(loaded.model, mode="fold")
    norm = normalizer(loaded.normalization)
    top = max(1, min(top, len(loaded.classes)))
    items = expand_images(images)
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        batch, slots = [], []
        for i, item in enumerate(items[start : start + batch_size], start):
            name = str(item) if not isinstance(item, Image.Image) else f"<image {i}>"
            results.append({"path": name})
            try:
                view = (
                    center_view(item, loaded.image_size)
                    if isinstance(item, str)
                    else center_crop(item, loaded.image_size)
                )
            except Exception as e:  # noqa: BLE001 - an unreadable file is reported, not fatal
                results[-1]["error"] = f"{type(e).__name__}: {e}"
                continue
            batch.append(torch.from_numpy(np.array(view)).permute(2, 0, 1))  # (3, S, S)
            slots.append(len(results) - 1)
        if not batch:
            continue
        x = norm(torch.stack(batch)).contiguous(memory_format=torch.channels_last)  # (B, 3, S, S)
        with torch.inference_mode():
            probs = net(x).float().softmax(1)  # (B, K)
        p, idx = probs.topk(top, dim=1)
        for slot, pr, ix in zip(slots, p.tolist(), idx.tolist()):
            results[slot]["top"] = [
                {"label": loaded.classes[j], "index": j, "prob": q} for j, q in zip(ix, pr)
            ]
    return results


# ---------------------------------------------------------------------------- export


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
        "resize_shorter_side": scaled(256, s),
        "input": f"float32 (batch, 3, {s}, {s}), RGB, normalised as in 'normalization'",
        "output": "logits (batch, num_classes)",
    })  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
        os.replace(tmp, out)
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
