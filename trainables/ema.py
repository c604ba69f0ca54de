"""An exponential moving average of a model's weights, the model a trial with ``ema_epochs > 0`` validates and exports.

The average is taken over the last ``ema_epochs`` epochs of optimiser steps (a per-step decay of
``1 - 1 / (ema_epochs x steps per epoch)``), so one setting means the same averaging window at batch 8 and at 128.
Early on the window is capped at a quarter of the ``t`` steps taken so far (a decay of at most ``1 - 4 / (4 + t)``,
the shape of timm's ``ModelEmaV3`` warm-up, whose cap of ``t / 9`` steps would keep a 500-step trial from ever
averaging over more than an epoch): the average follows the model closely at first instead of dragging its random
initialisation along, so a trial's first epochs (the ones an early-stopping scheduler judges) are not held back.
Parameters and floating-point buffers (BatchNorm's running statistics) are averaged; integer buffers are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["WARMUP", "WeightAverage", "ema_decay"]

#: The averaging window is at most 1/WARMUP of the steps taken so far.
WARMUP = 4.0


def ema_decay(ema_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay of an average over ``ema_epochs`` epochs of ``steps_per_epoch`` steps (0: no averaging)."""
    if ema_epochs <= 0:
        return 0.0
    return max(0.0, 1.0 - 1.0 / (ema_epochs * max(steps_per_epoch, 1)))


class WeightAverage:
    """A frozen copy of ``model`` whose weights follow the model's as an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.module.eval()
        self._tensors: tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[Any, Any]]] | None = None

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[Any, Any]]]:
        ours = self.module.state_dict()
        floats_ours, floats_theirs, others = [], [], []
        for name, theirs in model.state_dict().items():
            mine = ours[name]
            if mine.is_floating_point():
                floats_ours.append(mine)
                floats_theirs.append(theirs.detach())
            else:
                others.append((mine, theirs))
        return floats_ours, floats_theirs, others

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (after an optimiser step)."""
        self.updates += 1
        decay = min(self.decay, 1.0 - WARMUP / (WARMUP + self.updates))
        if self._tensors is None:  # the optimiser updates the same tensors in place, step after step
            self._tensors = self._pairs(model)
        ours, theirs, others = self._tensors
        torch._foreach_lerp_(ours, theirs, 1.0 - decay)
        for mine, other in others:
            mine.copy_(other)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
