"""torchrun + DistributedDataParallel: process-group set-up, CPU SyncBatchNorm, rank helpers.

Launch with `torchrun --nproc-per-node N -m reslab train ...`; torchrun sets RANK,
WORLD_SIZE and LOCAL_RANK, which is all this module reads. Gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int | None:
    """This process's GPU index on its node, where torchrun set LOCAL_RANK; else None."""
    value = os.environ.get("LOCAL_RANK")
    return None if value is None else int(value)


def from_env() -> DistInfo:
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        local_rank() or 0,
    )


def setup(device: torch.device, info: DistInfo | None = None) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process)."""
    info = info or from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return info


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the global batch, on any device.

    torch's SyncBatchNorm only runs on GPUs; this one all-reduces per-channel sums
    (autograd-aware) so 2 CPU processes with batch B/2 each normalise exactly like
    one process with batch B.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        # Sums in float64: E[x^2] - E[x]^2 in float32 loses digits when |mean| >> std.
        x64 = x.double()
        count = torch.tensor([x.numel() / c], dtype=torch.float64, device=x.device)
        moments = torch.cat([x64.sum((0, 2, 3)), (x64 * x64).sum((0, 2, 3)), count])
        moments = _AllReduceSum.apply(moments)  # (2C + 1,) summed over processes
        n = moments[-1]
        mean = moments[:c] / n
        var = (moments[c : 2 * c] / n - mean * mean).to(x.dtype)  # biased, as BN normalises
        mean = mean.to(x.dtype)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
            self.num_batches_tracked.add_(1)
        shape = (1, c, 1, 1)
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum)
            sync.load_state_dict(child.state_dict())
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model


@contextlib.contextmanager
def no_sync(model: nn.Module, skip: bool) -> Iterator[None]:
    """Inside, DDP's backward leaves the gradients unreduced where `skip` (the non-final
    micro-batches of an accumulated step: one all-reduce per step, not per micro-batch).
    Anything but a DDP module is left as it is."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


def all_reduce_mean(values: Tensor, info: DistInfo) -> Tensor:
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values)
        values /= info.world_size
    return values


__all__ = [
    "CPUSyncBatchNorm",
    "DistInfo",
    "all_reduce_mean",
    "cleanup",
    "convert_sync_batchnorm",
    "from_env",
    "no_sync",
    "setup",
]
