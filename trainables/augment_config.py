"""Which augmentations a trial runs: the fields, their "off" values and the one rule for "this op is on".

Torch-free, so the reports (which must not load torch) and the trial config read the same definition. Every field's
default is its "off" value, and an op is on when its value differs from that: a probability or strength above 0,
``crop_scale`` below 1, ``trivial_augment`` true. Adding an augmentation is one field here (with its check in
``__post_init__``) and its code in ``trainables.augment``; ``TrialConfig`` inherits the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["AUGMENT_OPS", "AugmentConfig", "augment_ops_on"]


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strong they are; every field at its default means none.

    hflip, vflip: probability of a horizontal / vertical flip. rotate: largest rotation in degrees (uniform in
    [-rotate, rotate]). brightness, contrast: jitter strength b, factor uniform in [1-b, 1+b]. trivial_augment: one
    TrivialAugmentWide op per image. crop_scale: random resized crop keeping [crop_scale, 1] of the area with aspect
    ratio in [3/4, 4/3]; 1.0 turns it off.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    trivial_augment: bool = False
    crop_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"rotate is a largest angle in degrees in [0, 180], got {self.rotate}")
        for name in ("brightness", "contrast"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} jitter must be in [0, 1), got {v}")
        if not 0.05 <= self.crop_scale <= 1.0:
            raise ValueError(f"crop_scale is the smallest kept area fraction in [0.05, 1], got {self.crop_scale}")

    @property
    def active(self) -> bool:
        """Whether any augmentation op is on."""
        return bool(augment_ops_on(vars(self)))


_OFF: dict[str, Any] = {f.name: f.default for f in fields(AugmentConfig)}


def _label(name: str, off: Any) -> str:
    # Every numeric op is off at an edge of its range: 0 for probabilities and strengths, 1 for crop_scale.
    if isinstance(off, bool):
        return f"{name} on"
    return f"{name} > {off:g}" if off == 0 else f"{name} < {off:g}"


#: Each augmentation op and, in words, when it counts as on.
AUGMENT_OPS: dict[str, str] = {name: _label(name, off) for name, off in _OFF.items()}


def _is_on(value: Any, off: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False  # a run that never recorded the field ran without the op
    if isinstance(off, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return not math.isnan(v) and v != off


def augment_ops_on(values: Mapping[str, Any]) -> list[str]:
    """The ops (in :data:`AUGMENT_OPS` order) that ``values`` turns on.

    ``values`` maps field names to typed values (a config) or to values read back from a run's files (text, NaN or
    missing for a run that never recorded the field: off).
    """
    return [name for name, off in _OFF.items() if _is_on(values.get(name), off)]
