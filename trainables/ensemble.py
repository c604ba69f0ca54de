"""The final model as one module: members, test-time augmentation, temperature; uint8 images in, probabilities out.

A final model averages the class probabilities of one or more trained members (each with its own image size,
channels, intensity standardisation and normalisation, all inside the module), optionally over test-time views of
each image, then applies one temperature fitted on images none of the members trained on. The whole thing traces to
TorchScript, so deployment applies exactly what evaluation measured.

Members see the module's input resized by :func:`resize_uint8`, and :func:`adapt_images` gives their training images
the same treatment, so a member is trained on the pixels it will be shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.augment import grey
from trainables.intensity import standardise

__all__ = [
    "TTA_MODES",
    "FinalModel",
    "Member",
    "adapt_images",
    "balanced_weights",
    "calibrate",
    "fit_temperature",
    "predict",
    "resize_uint8",
    "tta_views",
]

#: Test-time augmentation: none, the image and its mirror, or the image and four shifts of 1/32 of its size.
TTA_MODES = ("none", "hflip", "shift")


def resize_uint8(x: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """uint8 batch -> uint8 batch at ``size`` (antialiased bilinear) with ``channels`` (grey <-> RGB)."""
    if x.shape[1] != channels and channels == 1:
        x = grey(x.float()).round().clamp(0, 255).to(torch.uint8)
    elif x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def adapt_images(x: np.ndarray, size: tuple[int, int], channels: int, batch: int = 512) -> np.ndarray:
    """:func:`resize_uint8` over a whole decoded array, in batches (a no-op when it already fits)."""
    if tuple(x.shape[-2:]) == tuple(size) and x.shape[1] == channels:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    return torch.cat([resize_uint8(t[i : i + batch], size, channels) for i in range(0, len(t), batch)]).numpy()


def tta_views(x: torch.Tensor, mode: str, shift: int = 1) -> list[torch.Tensor]:
    """The views of a normalised float batch that test-time augmentation averages over (the image itself first);
    ``shift`` is the shift in pixels (a Python int, so the view traces into TorchScript at any input size)."""
    if mode == "none":
        return [x]
    if mode == "hflip":
        return [x, x.flip(-1)]
    if mode == "shift":
        h, w = x.shape[-2], x.shape[-1]
        d = shift
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        views = [x]
        for dy, dx in ((0, 0), (0, 2 * d), (2 * d, 0), (2 * d, 2 * d)):
            views.append(padded[..., dy : dy + h, dx : dx + w])
        return views
    raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")


class Member(nn.Module):
    """One trained network with its input handling: uint8 at the module's input spec -> mean softmax over views."""

    def __init__(
        self,
        net: nn.Module,
        size: tuple[int, int],
        channels: int,
        intensity: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        tta: str = "none",
    ) -> None:
        super().__init__()
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
        self.net = net
        self.size = (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.intensity = intensity
        self.tta = tta
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = standardise(resize_uint8(x, self.size, self.channels), self.intensity)
        x = (x.float() / 255.0 - self.mean) / self.std
        views = tta_views(x, self.tta, max(1, round(min(self.size) / 32)))
        probs = self.net(views[0]).float().softmax(1)
        for v in views[1:]:
            probs = probs + self.net(v).float().softmax(1)
        return probs / len(views)


class FinalModel(nn.Module):
    """Members' probabilities averaged, then calibrated: ``softmax(log(mean_i p_i) / temperature)``."""

    def __init__(self, members: list[Member], temperature: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("a final model needs at least one member")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def average(self, x: torch.Tensor) -> torch.Tensor:
        """The members' mean probabilities, before calibration."""
        probs = self.members[0](x)
        for m in self.members[1:]:
            probs = probs + m(x)
        return probs / len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return calibrate(self.average(x), self.temperature)


def calibrate(probs: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Temperature scaling of probabilities (on their logs): T > 1 softens, T < 1 sharpens, argmax unchanged."""
    return (probs.clamp_min(1e-12).log() / temperature).softmax(1)


def fit_temperature(probs: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature that minimises the negative log-likelihood of labels ``y`` under ``probs`` (Guo et al. 2017):
    a golden-section search over log T in [1/10, 10], the NLL being unimodal in it."""
    logp = probs.double().clamp_min(1e-12).log()
    y = y.long()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logp / math.exp(log_t), y))

    lo, hi = math.log(0.1), math.log(10.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


@torch.no_grad()
def predict(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``fn`` (a module in eval mode on ``device``, or one of its methods) over a decoded uint8 array, in batches,
    as a float CPU tensor."""
    out = [
        fn(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0)


def balanced_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Decision weights 1 / class frequency (normalised to mean 1): ``argmax(p x w)`` is then the decision that
    maximises balanced accuracy (mean recall) for calibrated ``p`` trained at these frequencies."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1)
    return w / w.mean()
