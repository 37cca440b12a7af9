"""An exponential moving average of a network's weights (beyond the paper).

Polyak averaging as timm's `ModelEma` and Keras's `use_ema` do it: after every step,
ema <- decay * ema + (1 - decay) * weights, for every floating-point parameter and
buffer (batch norm's running statistics too); integer buffers are copied. The decay
warms up as min(decay, (1 + n) / (10 + n)) over the first updates n, so the average
does not remember the random initialisation. The average never feeds back into
training: a run with an EMA takes exactly the steps of the same run without one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """The average of `model`'s weights; `update()` after each optimizer step.

    The optimizer updates the weights in place, so the pairs of tensors are gathered
    once here.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        ema, live = self.model.state_dict(), model.state_dict()
        floats = [k for k, t in live.items() if t.is_floating_point()]
        others = [k for k, t in live.items() if not t.is_floating_point()]
        self._ema_f, self._live_f = [ema[k] for k in floats], [live[k] for k in floats]
        self._ema_o, self._live_o = [ema[k] for k in others], [live[k] for k in others]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the network's current weights into the average."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._ema_f, self._live_f, 1.0 - decay)
        for e, t in zip(self._ema_o, self._live_o):
            e.copy_(t)

    def load(self, weights: dict, updates: int) -> None:
        """Restore an average saved as `weights` after `updates` updates (a resume)."""
        self.model.load_state_dict(weights)
        self.updates = int(updates)


__all__ = ["WeightEMA"]
