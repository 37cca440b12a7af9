"""The training step the micro-benchmarks time: a CIFAR net on one fixed random batch.

Channels-last, SGD with momentum and weight decay (foreach), cross-entropy: the model's
forward, backward and update, with no data loading.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from reslab import create_model


def cifar_step(name: str, batch: int, compiled: bool = False) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True
    )
    run = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step
