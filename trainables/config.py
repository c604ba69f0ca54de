"""The typed configuration of one trial, built from the flat dict a search space (or a user) hands over.

Everything below the top of the trainable reads fields of :class:`TrialConfig`, never dict keys, so a typo in a
search space is an error naming the key, not a silently ignored setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from trainables.augment_config import AugmentConfig
from trainables.cache import RESIZE_POLICIES, ImageSpec
from trainables.intensity import INTENSITY
from trainables.models import list_models, model_info

__all__ = ["CLASS_WEIGHTS", "OPTIMIZERS", "SCHEDULES", "TrialConfig", "check_choice", "parse_bool"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "onecycle", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class TrialConfig(AugmentConfig):
    """One trial's hyperparameters. Defaults are a small, sane CPU recipe.

    It is one flat dataclass (the flat keys are what Ray, Optuna, run.json and saved configs hold); the augmentation
    fields (``hflip`` ... ``crop_scale``) and their checks are inherited from :class:`AugmentConfig`, so they come
    first in ``to_dict()``.

    ``width`` and ``dropout`` of ``None`` mean "the model's own default"; ``grad_clip`` of 0 turns clipping off;
    ``image_size`` is ``"128"`` or ``"256x300"`` (height x width); ``intensity`` standardises each image's grey
    levels before everything else, in training, evaluation and the exported model (``trainables.intensity``);
    ``ema_epochs`` above 0 validates and hands back an exponential moving average of the weights over about that
    many epochs of steps (``trainables.ema``); ``recipe`` names a seed recipe, for reports only.
    """

    model: str = "tinyvgg"
    width: float | None = None
    dropout: float | None = None
    pretrained: bool = False
    freeze_backbone: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "none"
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    ema_epochs: float = 0.0
    class_weights: str = "none"
    batch_size: int = 32
    image_size: str = "64"
    channels: int = 1
    resize: str = "stretch"
    intensity: str = "none"
    epochs: int = 10
    seed: int = 0
    recipe: str = ""

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; valid models: {', '.join(list_models())}")
        supports = model_info(self.model).supports
        for name in ("width", "dropout"):
            if getattr(self, name) is not None and name not in supports:
                raise ValueError(f"model {self.model} takes no {name} (it accepts: {', '.join(sorted(supports))})")
        for name in ("pretrained", "freeze_backbone"):
            if getattr(self, name) and name not in supports:
                raise ValueError(
                    f"model {self.model} cannot be {name.replace('_', ' ')}: it is not a torchvision backbone"
                )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        check_choice("resize", self.resize, RESIZE_POLICIES)
        check_choice("intensity", self.intensity, INTENSITY)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v}")
        if self.width is not None and self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"weight_decay and grad_clip must be >= 0, got {self.weight_decay} and {self.grad_clip}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_epochs < 0:
            raise ValueError(f"ema_epochs must be >= 0 (0 turns weight averaging off), got {self.ema_epochs}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"batch_size and epochs must be >= 1, got {self.batch_size} and {self.epochs}")
        self.image_spec  # noqa: B018 - validates size and channels
        super().__post_init__()  # the augmentation strengths

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialConfig:
        """Build from a flat dict; unknown keys are an error that lists them and the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown trial config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
            )
        typed: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in config:
                continue
            v = config[f.name]
            if f.name == "image_size":
                h, w = ImageSpec.parse_size(_plain(f.name, v, str, int))
                v = f"{h}" if h == w else f"{h}x{w}"
            elif v is None and f.type.endswith("| None"):
                pass
            elif f.type == "int":
                v = _to_int(f.name, v)
            elif f.type in ("float", "float | None"):
                v = _to_float(f.name, v)
            elif f.type == "bool":
                v = parse_bool(f.name, v)
            else:
                v = _plain(f.name, v, str)
            typed[f.name] = v
        return cls(**typed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def image_spec(self) -> ImageSpec:
        h, w = ImageSpec.parse_size(self.image_size)
        return ImageSpec(h, w, self.channels, self.resize)

    @property
    def augment(self) -> AugmentConfig:
        """Just the augmentation fields, for ``BatchAugment``."""
        return AugmentConfig(**{f.name: getattr(self, f.name) for f in fields(AugmentConfig)})

    def model_kwargs(self) -> dict[str, Any]:
        """Only the optional model arguments this model takes and this config sets."""
        kwargs: dict[str, Any] = {}
        if self.width is not None:
            kwargs["width"] = self.width
        if self.dropout is not None:
            kwargs["dropout"] = self.dropout
        if "pretrained" in model_info(self.model).supports:
            kwargs["pretrained"] = self.pretrained
            kwargs["freeze_backbone"] = self.freeze_backbone
        return kwargs


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    """A ``ValueError`` naming ``name``, its valid values and the value given, unless ``value`` is one of them."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def parse_bool(name: str, value: Any) -> bool:
    """``True``/``False``, 0/1, or the strings true/false, yes/no, 1/0 (any case); anything else is an error.

    ``bool("False")`` is True, which is how ``freeze_backbone=False`` used to freeze the backbone.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false (or yes/no, 1/0), got {value!r}")


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _to_float(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def _plain(name: str, value: Any, *types: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join("text" if t is str else "an integer" for t in types)
        raise ValueError(f"{name} must be {names}, got {value!r}")
    return value
