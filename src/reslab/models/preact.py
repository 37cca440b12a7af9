"""Pre-activation ResNets: He, Zhang, Ren, Sun, *Identity Mappings in Deep Residual
Networks* (ECCV 2016), the "full pre-activation" unit of its Figure 4(e).

Each unit computes x_{l+1} = x_l + F(x_l) with F = (BN, ReLU, conv) x 2 (basic) or x 3
(bottleneck): nothing sits on the identity path, not even the ReLU after the addition
that the original unit has. Where the shape changes, the shortcut is a 1x1 projection
of the pre-activated input (the paper's code). After the last unit comes one more BN
and ReLU, then pooling. CIFAR (section 4): a 3x3 stem conv with no BN of its own (the
first unit's BN follows it); ImageNet: the original 7x7 stem with BN, ReLU and max pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .blocks import conv1x1, conv3x3
from .resnet import ResNet, check_layout


class PreActBasic(nn.Module):
    """BN-ReLU-3x3, BN-ReLU-3x3 (Figure 4(e) with the basic block)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU()  # not in place: x itself is the identity path
        changes = stride != 1 or in_planes != planes
        self.downsample = conv1x1(in_planes, planes, stride) if changes else None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))  # F(x)
        return out + shortcut  # x + F(x): no ReLU after the addition


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (x4 channels); the stride on the 3x3."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.relu = nn.ReLU()
        changes = stride != 1 or in_planes != out_planes
        self.downsample = conv1x1(in_planes, out_planes, stride) if changes else None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))  # F(x)
        return out + shortcut


PREACT_BLOCKS: dict[str, type[nn.Module]] = {"basic": PreActBasic, "bottleneck": PreActBottleneck}


class PreActResNet(ResNet):
    """The ResNet interface (forward_features/head/stages, stages(), checkpointing) with
    pre-activation units, a final BN-ReLU, and the stems described above."""

    def __init__(
        self,
        block: str,
        depths: Sequence[int],
        widths: Sequence[int],
        *,
        stem: str = "cifar",
        stem_width: int = 16,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        nn.Module.__init__(self)
        if block not in PREACT_BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(PREACT_BLOCKS)}")
        check_layout(stem, depths, widths)
        self.num_classes = num_classes
        self.grad_checkpointing = False
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.bn1: nn.Module = nn.BatchNorm2d(stem_width)
            self.relu: nn.Module = nn.ReLU(inplace=True)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            reduction = 4
        else:  # the first unit's BN-ReLU normalises the stem conv's output
            self.conv1 = conv3x3(in_chans, stem_width)
            self.bn1, self.relu, self.maxpool = nn.Identity(), nn.Identity(), nn.Identity()
            reduction = 1
        planes_in = self._add_stages(PREACT_BLOCKS[block], depths, widths, stem_width, reduction)
        self.num_features = planes_in
        self.bn_final = nn.BatchNorm2d(planes_in)  # the last unit's output is not normalised
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes_in, num_classes)
        self._init_weights(False)

    def forward_features(self, x: Tensor) -> Tensor:
        x = super().forward_features(x)
        return self.relu_final(self.bn_final(x))
