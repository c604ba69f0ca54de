"""The model registry: ``register_model``, ``create_model`` (every argument checked), ``list_models``, ``model_info``.

Modelled on timm's ``_registry.py``: a factory registers under its function name and is built through
:func:`create_model`, which validates every argument, so a search config with a typo or an out-of-range value fails
loudly instead of silently training a different model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from trainables.registry import Registry

__all__ = [
    "MIN_IMAGE_SIZE",
    "OPTIONAL_KWARGS",
    "Family",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]

Family = Literal["seed_cnn", "torchvision"]

#: Optional keyword arguments a model may accept; each model declares the subset it supports.
OPTIONAL_KWARGS: frozenset[str] = frozenset({"width", "dropout", "pretrained", "freeze_backbone"})

#: Smallest input height/width every registered model handles.
MIN_IMAGE_SIZE = 32

_FAMILIES: frozenset[str] = frozenset({"seed_cnn", "torchvision"})


@dataclass(frozen=True)
class ModelInfo:
    """Registry entry: the factory plus what it accepts, so callers can check before building."""

    name: str
    factory: Callable[..., nn.Module]
    family: Family
    supports: frozenset[str]


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(
    name: str | None = None, *, family: Family, supports: frozenset[str]
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory under ``name`` (default: the function's name).

    The factory is called as ``factory(in_channels=..., num_classes=..., image_size=..., **kwargs)``
    with ``kwargs`` restricted to ``supports``; it is returned unchanged.
    """
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; valid families: {', '.join(sorted(_FAMILIES))}")
    supports = frozenset(supports)
    unknown = supports - OPTIONAL_KWARGS
    if unknown:
        raise ValueError(f"unknown optional kwargs {sorted(unknown)}; valid optional kwargs: {sorted(OPTIONAL_KWARGS)}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        model_name = name if name is not None else factory.__name__
        MODELS.register(model_name, ModelInfo(name=model_name, factory=factory, family=family, supports=supports))
        return factory

    return decorator


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.list()


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; ``ValueError`` listing the valid names if it is unknown."""
    return MODELS.get(name)


def _check_int(arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{arg} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _check_real(arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{arg} must be finite, got {value!r}")
    return value


def _check_bool(arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{arg} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def _check_image_size(image_size: Any) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise ValueError(f"image_size must be a (height, width) pair, got {image_size!r}")
    height, width = (_check_int("image_size", v) for v in image_size)
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, got {tuple(image_size)!r}")
    return height, width


def _check_optional(kwargs: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key == "width":
            value = _check_real("width", value)
            if value <= 0:
                raise ValueError(f"width must be > 0, got {value!r}")
        elif key == "dropout":
            value = _check_real("dropout", value)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"dropout must be in [0, 1), got {value!r}")
        else:  # pretrained, freeze_backbone
            value = _check_bool(key, value)
        checked[key] = value
    return checked


def create_model(
    name: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int], **kwargs: Any
) -> nn.Module:
    """Build registered model ``name`` for ``in_channels`` x ``image_size`` inputs and ``num_classes`` logits.

    ``kwargs`` may only contain the optional arguments the model supports (see
    :func:`model_info`); anything else raises ``TypeError`` rather than being silently dropped.
    Out-of-range values raise ``ValueError``.
    """
    info = model_info(name)
    unsupported = sorted(set(kwargs) - info.supports)
    if unsupported:
        accepted = ", ".join(sorted(info.supports)) or "none"
        raise TypeError(
            f"model {name!r} does not accept keyword argument(s) {', '.join(map(repr, unsupported))}; "
            f"it accepts: {accepted} (besides in_channels, num_classes, image_size)"
        )
    in_channels = _check_int("in_channels", in_channels)
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels!r}")
    num_classes = _check_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    size = _check_image_size(image_size)
    return info.factory(in_channels=in_channels, num_classes=num_classes, image_size=size, **_check_optional(kwargs))
