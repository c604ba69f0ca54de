"""Per-image intensity standardisation: the same film from two scanners should reach the model looking alike.

Chest X-rays from different sites differ in exposure, contrast and processing; a model trained at one site learns its
grey levels. Standardising each image's intensities before normalisation removes part of that difference:

* ``none``: the pixels as decoded;
* ``autocontrast``: stretch each image (each channel) so its darkest pixel is 0 and its brightest 255;
* ``equalize``: histogram equalisation per image, so every film's grey levels spread evenly over 0-255.

The ops are torchvision's v2 functional ones on uint8 batches; they trace into TorchScript, so the exported model
applies exactly what training and evaluation applied.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ["INTENSITY", "intensity_stats", "standardise"]

#: The intensity standardisation choices, "off" first.
INTENSITY = ("none", "autocontrast", "equalize")


def standardise(x: torch.Tensor, method: str) -> torch.Tensor:
    """uint8 batch (B x C x H x W) -> uint8 batch with each image's intensities standardised by ``method``."""
    if method == "none":
        return x
    if method == "autocontrast":
        return TF.autocontrast(x)
    if method == "equalize":
        return TF.equalize(x)
    raise ValueError(f"intensity must be one of {', '.join(INTENSITY)}, got {method!r}")


def intensity_stats(
    x: np.ndarray | torch.Tensor, method: str, *, limit: int = 2048, batch: int = 256
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 images ``x`` after ``standardise`` (at most ``limit``
    evenly spaced images, which is plenty for two numbers a channel)."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if len(t) > limit:
        t = t[torch.linspace(0, len(t) - 1, limit).long()]
    total = torch.zeros(t.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for i in range(0, len(t), batch):
        b = standardise(t[i : i + batch], method).double().div_(255.0)
        total += b.sum(dim=(0, 2, 3))
        squares += (b * b).sum(dim=(0, 2, 3))
        count += b.shape[0] * b.shape[2] * b.shape[3]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-3) for v in std)
