"""Building blocks of the paper's networks (He et al. 2016, sections 3.2-3.3, Figure 5).

Every convolution is followed by batch normalisation and then the activation
(section 3.4, "we adopt batch normalization right after each convolution and
before activation"); there is no dropout. Module names follow torchvision
(`conv1, bn1, conv2, bn2[, conv3, bn3], downsample`) so the standard ImageNet
checkpoints load key by key.

Shortcut options (section 3.3 and Table 3):
    "A"     identity; where dimensions grow, stride-2 subsampling and zero-padded
            channels (parameter-free). The paper's choice for CIFAR-10.
    "B"     identity, and a 1x1 projection (conv + BN) only where dimensions change.
            The paper's ImageNet default and torchvision's layout.
    "C"     a 1x1 projection on every shortcut.
    "none"  no shortcut at all: the "plain" counterpart with the same layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SHORTCUTS = ("A", "B", "C", "none")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the batch norm that follows has its own shift.
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


PAD_LAYOUTS = ("end", "both")


class PadShortcut(nn.Module):
    """Option A: identity with stride-s subsampling and zero-padded extra channels.

    Where the identity channels sit is not fixed by the paper, and weights trained with
    one layout are wrong in the other. "end" (the default, as fb.resnet.torch): identity
    first, zeros after. "both" (akamaster/pytorch_resnet_cifar10's widely used CIFAR
    checkpoints): half the zeros before, half after.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, layout: str = "end") -> None:
        super().__init__()
        if layout not in PAD_LAYOUTS:
            raise ValueError(f"unknown shortcut_pad {layout!r}; choose one of {PAD_LAYOUTS}")
        self.stride, self.layout = stride, layout
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H/s, W/s)
        # F.pad pads the last dims first: (W, W, H, H, C before, C after).
        before = self.extra // 2 if self.layout == "both" else 0
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.extra}, layout={self.layout}"


def make_shortcut(
    option: str, in_planes: int, out_planes: int, stride: int, pad: str = "end"
) -> nn.Module | None:
    """The shortcut branch of one block, or None where it is the plain identity/absent."""
    if option not in SHORTCUTS:
        raise ValueError(
            f"unknown shortcut option {option!r}; choose one of {', '.join(SHORTCUTS)}"
        )
    changes = stride != 1 or in_planes != out_planes
    if option == "none" or (not changes and option != "C"):
        return None
    if option == "A":
        if out_planes < in_planes:
            raise ValueError(
                f"shortcut option A cannot shrink channels ({in_planes} -> {out_planes}); use B or C"
            )
        return PadShortcut(in_planes, out_planes, stride, pad)
    # Options B and C: projection W_s x (equation 2), conv then BN as everywhere else.
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class _Block(nn.Module):
    """What every block shares: the shortcut branch of y = relu(F(x) + shortcut(x))."""

    relu: nn.ReLU

    def _set_shortcut(
        self, option: str, in_planes: int, out_planes: int, stride: int, pad: str = "end"
    ) -> None:
        self.downsample = make_shortcut(option, in_planes, out_planes, stride, pad)
        self.residual = option != "none"

    def shortcut(self, x: Tensor) -> Tensor:
        """x itself (eq. 1), or W_s x / zero-padded x where dimensions change (eq. 2)."""
        return x if self.downsample is None else self.downsample(x)


class BasicBlock(_Block):
    """Two 3x3 layers (Figure 5 left): ResNet-18/34 and the CIFAR networks."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        shortcut_pad: str = "end",
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if stride_in_1x1:
            raise ValueError(
                "stride_in_1x1 applies to bottleneck blocks; this net has basic blocks"
            )
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._set_shortcut(shortcut, in_planes, planes, stride, shortcut_pad)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)  # F(x)
        if self.residual:
            out = out + self.shortcut(x)  # F(x) + x (eq. 1)
        return self.relu(out)


class Bottleneck(_Block):
    """1x1 reduce, 3x3, 1x1 restore (Figure 5 right): ResNet-50/101/152.

    Departure from the paper: by default the stride sits on the 3x3 conv, as in
    torchvision's checkpoints ("ResNet v1.5", slightly more accurate and ~8% more
    FLOPs on ResNet-50). `stride_in_1x1=True` restores the paper's placement on the
    first 1x1 conv; the parameter names and shapes are the same either way.
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        shortcut_pad: str = "end",
    ) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_planes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self._set_shortcut(shortcut, in_planes, out_planes, stride, shortcut_pad)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)  # F(x)
        if self.residual:
            out = out + self.shortcut(x)  # F(x) + x (eq. 1)
        return self.relu(out)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def checkpointed(blocks: nn.Sequential, x: Tensor) -> Tensor:
    """Run blocks one by one under activation checkpointing (recompute in backward)."""
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if torch.is_grad_enabled() else block(x)
    return x
