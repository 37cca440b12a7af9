"""Fast inference copies of a network: batch norm folded, then oneDNN Graph, TorchScript
or inductor on top (`optimize_for_inference`)."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from ..models import spec_of
from ..weights import IMAGENET_IMAGE_SIZE

MODES = ("auto", "fold", "onednn", "jit", "compile")
# mode="auto" is "onednn" on CPU and "fold" elsewhere. Measured on this 2-core CPU at
# 224 px, median ms, round-robin in one process (docs/benchmarks.md has the full runs):
# resnet18 batch 1: ONNX Runtime 12.96 / onednn 13.46 / compile 15.48 / jit 17.65;
# resnet50 batch 1: 30.34 / 31.46 / 35.57; resnet50 batch 32: 855 / 890 / 927.


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


def frozen_trace(module: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    """`module` traced on `example` and frozen (weights as constants): the start of both
    TorchScript modes. TorchScript is deprecated from torch 2.13; its warnings are
    silenced here, and if it goes, optimize_for_inference falls back to fold."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))


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
        self.graph = frozen_trace(folded, example)
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
        size = int(getattr(spec_of(model), "input_size", IMAGENET_IMAGE_SIZE))
        example_input = torch.randn(1, 3, size, size)
    x = example_input.to(device).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():  # not inference_mode: its tensors cannot be frozen into a graph
            if mode == "jit":
                # Measured (docs/benchmarks.md): TorchScript's optimize_for_inference, which
                # prepacks convolutions for oneDNN, runs faster on NCHW than channels-last.
                folded = folded.to(memory_format=torch.contiguous_format)
                x = x.contiguous()
                fast = torch.jit.optimize_for_inference(frozen_trace(folded, x))
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
