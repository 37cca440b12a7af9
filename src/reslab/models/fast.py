"""A wide, shallow residual network for fast CIFAR training (beyond the paper).

The paper's CIFAR nets (section 4.2) are narrow and deep: 16-64 filters on 32x32
maps. On a CPU, thin convolutions on large maps run far below the machine's peak,
while wide ones on small maps run near it (docs/benchmarks.md). The fast CIFAR
records took the other road: the ResNet-9 family of the DAWNBench records (Page,
2018) and airbench (Jordan, 2024) use a few wide stages that each shrink the map
early. This network follows them, keeping the paper's parts where it can:

    stem    a fixed 2x2 "patch-whitening" conv (weights from the data's patch
            covariance, `init_from_data`), then ReLU             (B, 2*12, 31, 31)
    stage i conv3x3 (c -> w_i), 2x2 max-pool, BN, ReLU; then n_i of the paper's
            basic blocks (two 3x3 convs, identity shortcut, eq. 1)
                                                   (B, w_i, 15|7|3, 15|7|3)
    head    global max pool, fc without bias, logits scaled by `head_scale`

Departures from the paper, all from the records above: the whitening stem, the
pool before BN (cheaper: BN runs on the pooled map), global max instead of average
pooling, and the scaled logits (the fc's output starts small, so training starts
with a near-uniform prediction).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import BasicBlock, conv3x3

WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues (airbench's value)


class DownStage(nn.Module):
    """conv3x3, 2x2 max-pool, BN, ReLU, then `depth` basic blocks at the pooled size."""

    # The pool sits between conv and bn; inference.fold_batchnorm folds through it only
    # where every BN scale is positive (max-pool commutes with increasing maps).
    max_pool_between_conv_and_bn = True

    def __init__(self, in_planes: int, planes: int, depth: int) -> None:
        super().__init__()
        self.conv = conv3x3(in_planes, planes)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*(BasicBlock(planes, planes, 1, "A") for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # (B, planes, H, W)
        x = self.pool(x)  # (B, planes, H/2, W/2)
        x = self.bn(x)
        x = self.relu(x)
        return self.blocks(x)


class FastResNet(nn.Module):
    """See the module docstring. widths/depths: one entry per stage."""

    @staticmethod
    def weighted_layers(block: str, depths: Sequence[int]) -> int:
        """The whitening conv, one conv per stage, two per residual block, fc."""
        return 2 + len(depths) + 2 * sum(depths)

    def __init__(
        self,
        widths: Sequence[int] = (32, 128, 128),
        depths: Sequence[int] = (1, 1, 1),
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        head_scale: float = 0.125,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths or min(depths) < 0:
            raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} must pair up")
        self.num_classes = num_classes
        self.head_scale = head_scale
        patch = in_chans * 2 * 2
        # Fixed weights (set by init_from_data); the bias still learns.
        self.whiten = nn.Conv2d(in_chans, 2 * patch, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names: list[str] = []
        self.feature_info: list[dict[str, object]] = []
        planes = 2 * patch
        for i, (width, depth) in enumerate(zip(widths, depths)):
            name = f"layer{i + 1}"
            self.add_module(name, DownStage(planes, width, depth))
            planes = width
            self.stage_names.append(name)
            self.feature_info.append({"module": name, "num_chs": width, "reduction": 2 ** (i + 1)})
        self.num_features = planes
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(planes, num_classes, bias=False)
        self.grad_checkpointing = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.whiten:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """Whitening stem from normalised training images x (N, C, H, W).

        The 2x2 patches' covariance is Q diag(l) Q^T; the filters Q^T / sqrt(l + eps)
        decorrelate the patches and give each direction unit variance. Each filter
        appears with both signs so the ReLU after it keeps all the information.
        """
        c = x.shape[1]
        patches = x.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()  # (M, C*4)
        cov = patches.T @ patches / len(patches)  # (C*4, C*4)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        filters = (eigvecs.T / (eigvals + WHITEN_EPS).sqrt()[:, None]).reshape(-1, c, 2, 2)
        weight = torch.cat([filters, -filters]).to(self.whiten.weight)
        self.whiten.weight.copy_(weight)
        self.whiten.bias.zero_()

    def stages(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.stage_names]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable  # accepted for API symmetry; the net is shallow

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.whiten(x))  # (B, 24, H-1, W-1)
        outs = []
        for stage in self.stages():
            x = stage(x)
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.pool(x), 1)  # (B, num_features)
        return x if pre_logits else self.fc(x) * self.head_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
