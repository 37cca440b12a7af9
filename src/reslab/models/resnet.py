"""The paper's CIFAR (section 4.2) and ImageNet (Table 1) networks from one builder.

ImageNet (Table 1): a 7x7/2 conv with 64 filters, a 3x3/2 max pool, four stages
(conv2_x..conv5_x, named layer1..layer4 as in torchvision) on 56/28/14/7 maps with
64/128/256/512 base widths, global average pooling and a 1000-way fc.

CIFAR (section 4.2): a 3x3 conv with 16 filters, three stages of n blocks (2n
layers) on 32/16/8 maps with 16/32/64 filters, downsampling by stride-2 convs,
global average pooling and a 10-way fc: 6n+2 weighted layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import BLOCKS, SHORTCUTS, checkpointed


def make_stage(
    block: type[nn.Module], in_planes: int, planes: int, n: int, stride: int, **kwargs: object
) -> tuple[nn.Sequential, int]:
    """n blocks; the first one changes resolution (stride) and width. Returns (stage, out)."""
    out_planes = planes * block.expansion
    blocks = [block(in_planes, planes, stride, **kwargs)]
    blocks += [block(out_planes, planes, 1, **kwargs) for _ in range(n - 1)]
    return nn.Sequential(*blocks), out_planes


def check_layout(stem: str, depths: Sequence[int], widths: Sequence[int]) -> None:
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' or 'cifar'")
    if len(depths) != len(widths) or not depths or min(depths) < 1:
        raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} must pair up, >= 1")


class ResNet(nn.Module):
    """A residual (or, with shortcut="none", plain) network of any depth and width.

    Args:
        block: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1).
        depths: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 3, 3) for ResNet-20.
        widths: base filters per stage, e.g. (64, 128, 256, 512) or (16, 32, 64).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (one 3x3 conv).
        stem_width: filters of the first conv (64 ImageNet, 16 CIFAR).
        shortcut: "A", "B", "C" or "none" (see blocks.py).
        stride_in_1x1: bottleneck only: the paper's stride placement (see Bottleneck).
        zero_init_residual: start each residual branch's last BN scale at 0, so every
            block begins as the identity. Beyond the paper (Goyal et al. 2017).
        shortcut_pad: option A: "end" or "both", where the zero channels go (PadShortcut).
    """

    @staticmethod
    def weighted_layers(block: str, depths: Sequence[int]) -> int:
        """Layers as the paper counts them: the stem conv, the convs of the main path, fc."""
        return (2 if block == "basic" else 3) * sum(depths) + 2

    def __init__(
        self,
        block: str,
        depths: Sequence[int],
        widths: Sequence[int],
        *,
        stem: str = "imagenet",
        stem_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        shortcut_pad: str = "end",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
        check_layout(stem, depths, widths)
        block_cls = BLOCKS[block]
        self.num_classes = num_classes
        self.grad_checkpointing = False

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            reduction = 4
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
            reduction = 1
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)

        self.num_features = self._add_stages(
            block_cls,
            depths,
            widths,
            stem_width,
            reduction,
            shortcut=shortcut,
            stride_in_1x1=stride_in_1x1,
            shortcut_pad=shortcut_pad,
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual and shortcut != "none")

    def _add_stages(
        self,
        block_cls: type[nn.Module],
        depths: Sequence[int],
        widths: Sequence[int],
        planes_in: int,
        reduction: int,
        **block_kwargs: object,
    ) -> int:
        """Stage i is `layer{i+1}`; every stage after the first halves the map. Returns
        the last stage's channels."""
        self.feature_info: list[dict[str, object]] = []
        self.stage_names: list[str] = []
        for i, (n, width) in enumerate(zip(depths, widths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            stage, planes_in = make_stage(block_cls, planes_in, width, n, stride, **block_kwargs)
            name = f"layer{i + 1}"
            self.add_module(name, stage)
            self.stage_names.append(name)
            self.feature_info.append({"module": name, "num_chs": planes_in, "reduction": reduction})
        return planes_in

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He et al. 2015 ([13] in the paper): zero-mean Gaussian, std sqrt(2/n). We use
        # n = fan-out (k*k*out), [13]'s backward-pass form, as torchvision does.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if hasattr(m, "last_bn"):
                    nn.init.zeros_(m.last_bn().weight)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: memory O(sqrt) for very deep nets."""
        self.grad_checkpointing = enable

    def forward_stem(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # (B, 64, H/2, W/2) ImageNet; (B, 16, H, W) CIFAR
        x = self.bn1(x)
        x = self.relu(x)
        return self.maxpool(x)  # (B, 64, H/4, W/4) ImageNet

    def _run_stage(self, stage: nn.Sequential, x: Tensor) -> Tensor:
        if self.grad_checkpointing and self.training:
            return checkpointed(stage, x)
        return stage(x)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every stage's output: C2..C5 on ImageNet nets (strides 4..32), for backbones."""
        x = self.forward_stem(x)
        outs = []
        for stage in self.stages():
            x = self._run_stage(stage, x)
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.forward_stem(x)
        for stage in self.stages():
            x = self._run_stage(stage, x)
        return x  # (B, num_features, H/32, W/32) ImageNet; (B, 64, H/4, W/4) CIFAR

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # Global average pooling makes the net fully convolutional: any input size
        # works, which the paper's multi-scale testing relies on.
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (B, num_features)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
