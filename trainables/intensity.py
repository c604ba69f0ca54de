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

import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ["INTENSITY", "standardise"]

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
