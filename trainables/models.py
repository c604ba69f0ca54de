"""Name -> factory registry of the chest X-ray classifiers the hyperparameter search can train.

Modelled on timm's ``_registry.py``: each factory is registered under its function name with
``@register_model`` and built through :func:`create_model`, which validates every argument so a
search configuration with a typo or an out-of-range value fails loudly instead of silently
training a different model.

Two families are registered:

* ``seed_cnn``: the seed project's from-scratch CNNs (``tinyvgg``, ``cifar_cnn``, ``alexnet_gray``),
  which accept ``width`` (channel multiplier) and ``dropout``.
* ``torchvision``: ``resnet18``, ``resnet50``, ``densenet121``, ``efficientnet_b0`` with a new
  first conv for greyscale input and a new classification head; they accept ``dropout``,
  ``pretrained`` (ImageNet weights from the local torch hub cache only, never downloaded) and
  ``freeze_backbone`` (train only the head).

All models take ``in_channels`` 1 or 3, any input of at least 32x32 (non-square too) and return
logits of shape ``[N, num_classes]``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from runstore.errors import UserError

__all__ = [
    "OPTIONAL_KWARGS",
    "MIN_IMAGE_SIZE",
    "Family",
    "ModelInfo",
    "PretrainedWeightsMissing",
    "register_model",
    "list_models",
    "model_info",
    "create_model",
    "pretrained_weights_path",
    "pretrained_available",
    "set_train_mode",
    "head_parameters",
    "count_parameters",
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


class PretrainedWeightsMissing(FileNotFoundError, UserError):
    """ImageNet weights are not in the local torch hub cache (this machine cannot download them)."""

    def __init__(self, model_name: str, path: Path, url: str) -> None:
        self.model_name = model_name
        self.path = path
        self.url = url
        super().__init__(
            f"pretrained weights for {model_name} not found at {path}; this machine cannot download "
            f"them: copy that file there (from {url}) or set TORCH_HOME to a directory whose "
            f"hub/checkpoints/ holds it"
        )


_REGISTRY: dict[str, ModelInfo] = {}

# ImageNet weight enums of the torchvision models; only ``.DEFAULT.url`` is used (for the file name).
_TORCHVISION_WEIGHTS: dict[str, type[torchvision.models.WeightsEnum]] = {
    "resnet18": torchvision.models.ResNet18_Weights,
    "resnet50": torchvision.models.ResNet50_Weights,
    "densenet121": torchvision.models.DenseNet121_Weights,
    "efficientnet_b0": torchvision.models.EfficientNet_B0_Weights,
}


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
        if model_name in _REGISTRY:
            raise ValueError(f"model {model_name!r} is already registered")
        _REGISTRY[model_name] = ModelInfo(name=model_name, factory=factory, family=family, supports=supports)
        return factory

    return decorator


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; ``ValueError`` listing the valid names if it is unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None


# --------------------------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Helpers shared by the training loop
# --------------------------------------------------------------------------------------------


def _frozen_batchnorms(model: nn.Module) -> Iterator[_BatchNorm]:
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters(recurse=False)):
            yield module


def set_train_mode(model: nn.Module, train: bool = True) -> nn.Module:
    """``model.train(train)``, but BatchNorm layers of a frozen backbone stay in eval mode.

    A frozen backbone must keep its (pretrained) running statistics; plain ``model.train()``
    would let every training forward pass overwrite them.
    """
    model.train(train)
    if getattr(model, "frozen_backbone", False):
        for module in _frozen_batchnorms(model):
            module.eval()
    return model


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the classification head (the layer(s) producing the ``num_classes`` logits).

    For torchvision models this is the replaced head; for seed CNNs the final Linear layer.
    """
    head_name = getattr(model, "head_name", None)
    if not isinstance(head_name, str):
        raise ValueError(f"{type(model).__name__} was not built by create_model (it has no head_name attribute)")
    return list(model.get_submodule(head_name).parameters())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _finish(model: nn.Module, head_name: str, frozen_backbone: bool = False) -> nn.Module:
    model.head_name = head_name
    model.frozen_backbone = frozen_backbone
    return set_train_mode(model, True)


# --------------------------------------------------------------------------------------------
# Seed CNNs
# --------------------------------------------------------------------------------------------


class TinyVGG(nn.Module):
    """CNN Explainer TinyVGG; its Linear head is sized for exactly one input size."""

    def __init__(
        self, in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv_block_1 = self._block(in_channels, hidden)
        self.conv_block_2 = self._block(hidden, hidden)
        with torch.no_grad():
            dummy = torch.zeros(1, in_channels, *image_size)
            flat = self.conv_block_2(self.conv_block_1(dummy)).numel()
        layers: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*layers)

    @staticmethod
    def _block(in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"tinyvgg was built for image_size {self.image_size}, got input of size {tuple(x.shape[-2:])}"
            )
        return self.classifier(self.conv_block_2(self.conv_block_1(x)))


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def tinyvgg(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.0
) -> nn.Module:
    """Seed TinyVGG: 2 x [conv-relu-conv-relu-pool] with round(10*width) channels, Linear head."""
    model = TinyVGG(in_channels, num_classes, image_size, _scaled(10, width), dropout)
    return _finish(model, f"classifier.{len(model.classifier) - 1}")


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def cifar_cnn(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.5
) -> nn.Module:
    """Seed 6-conv / 3-FC CIFAR CNN (conv widths 32-64, 128-128, 256-256 and FC 1024-512, x width)."""
    del image_size  # adaptive pooling makes it size independent
    layers: list[nn.Module] = []
    prev = in_channels
    for first, second in ((32, 64), (128, 128), (256, 256)):
        first, second = _scaled(first, width), _scaled(second, width)
        layers += [
            nn.Conv2d(prev, first, kernel_size=3, padding=1),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.Conv2d(first, second, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        prev = second
    fc1, fc2 = _scaled(1024, width), _scaled(512, width)
    model = nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Sequential(
            nn.Linear(prev * 16, fc1),
            nn.ReLU(inplace=True),
            _dropout(dropout),
            nn.Linear(fc1, fc2),
            nn.ReLU(inplace=True),
            _dropout(dropout),
            nn.Linear(fc2, num_classes),
        ),
    )
    return _finish(model, "3.6")


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def alexnet_gray(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.5
) -> nn.Module:
    """Seed AlexNet-like CNN for 256x300 X-rays; pools use padding 1 so 32x32 inputs still work."""
    del image_size  # adaptive pooling makes it size independent
    c1, c2, c3, c4, fc = (_scaled(c, width) for c in (64, 192, 384, 256, 4096))

    def pool() -> nn.Module:
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    model = nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            pool(),
        ),
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),
        nn.Sequential(
            _dropout(dropout),
            nn.Linear(c4 * 36, fc),
            nn.ReLU(inplace=True),
            _dropout(dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        ),
    )
    return _finish(model, "3.6")


# --------------------------------------------------------------------------------------------
# torchvision transfer-learning models
# --------------------------------------------------------------------------------------------

_TORCHVISION_KWARGS = frozenset({"dropout", "pretrained", "freeze_backbone"})

# The DenseNet checkpoints torchvision publishes name layers "norm.1" instead of "norm1" (and predate
# BatchNorm's num_batches_tracked buffer, which load_state_dict fills in itself).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _weights_url(name: str) -> str:
    weights = _TORCHVISION_WEIGHTS.get(name)
    if weights is None:
        model_info(name)  # unknown name -> ValueError listing the valid ones
        raise ValueError(f"model {name!r} has no pretrained weights (only torchvision models do)")
    return weights.DEFAULT.url


def pretrained_weights_path(name: str) -> Path:
    """Where ``pretrained=True`` looks for ``name``'s ImageNet weights: ``<torch hub dir>/checkpoints/``.

    Honours ``TORCH_HOME`` (the hub dir is ``$TORCH_HOME/hub``) and ``torch.hub.set_dir``.
    ``ValueError`` for models without pretrained weights.
    """
    file_name = os.path.basename(_weights_url(name))
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def pretrained_available(name: str) -> bool:
    """True if ``name`` has pretrained weights and the file is in the local hub cache."""
    if model_info(name).family != "torchvision":
        return False
    return pretrained_weights_path(name).is_file()


def _load_pretrained(model: nn.Module, name: str, path: Path) -> None:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"could not read pretrained weights for {name} from {path}: {exc}") from exc
    if name == "densenet121":
        state_dict = {_DENSENET_OLD_KEY.sub(r"\1\2", key): value for key, value in state_dict.items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise RuntimeError(f"pretrained weights at {path} do not fit {name}: {exc}") from exc


def _grey_conv(conv: nn.Conv2d, copy_weights: bool) -> nn.Conv2d:
    """1-channel copy of ``conv``; with ``copy_weights`` its kernel is the RGB kernel summed over channels."""
    new = nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    if copy_weights:
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _build_torchvision(
    name: str,
    builder: Callable[..., nn.Module],
    first_conv: str,
    head: str,
    *,
    in_channels: int,
    num_classes: int,
    dropout: float,
    pretrained: bool,
    freeze_backbone: bool,
) -> nn.Module:
    """Build ``name`` without downloading, load local weights, then swap first conv and head."""
    path = pretrained_weights_path(name) if pretrained else None
    if path is not None and not path.is_file():
        raise PretrainedWeightsMissing(name, path, _weights_url(name))
    model = builder(weights=None)
    if path is not None:
        _load_pretrained(model, name, path)
    if in_channels == 1:
        model.set_submodule(first_conv, _grey_conv(model.get_submodule(first_conv), copy_weights=pretrained))
    old_head = model.get_submodule(head)
    in_features = [m for m in old_head.modules() if isinstance(m, nn.Linear)][-1].in_features
    linear = nn.Linear(in_features, num_classes)
    model.set_submodule(head, nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear)
    if freeze_backbone:
        head_params = {id(p) for p in model.get_submodule(head).parameters()}
        for param in model.parameters():
            param.requires_grad_(id(param) in head_params)
    return _finish(model, head, frozen_backbone=freeze_backbone)


@register_model(family="torchvision", supports=_TORCHVISION_KWARGS)
def resnet18(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    dropout: float = 0.0,
    pretrained: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """torchvision ResNet-18 with grey first conv (``conv1``) and new head (``fc``)."""
    del image_size
    return _build_torchvision(
        "resnet18",
        torchvision.models.resnet18,
        "conv1",
        "fc",
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
    )


@register_model(family="torchvision", supports=_TORCHVISION_KWARGS)
def resnet50(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    dropout: float = 0.0,
    pretrained: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """torchvision ResNet-50 with grey first conv (``conv1``) and new head (``fc``)."""
    del image_size
    return _build_torchvision(
        "resnet50",
        torchvision.models.resnet50,
        "conv1",
        "fc",
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
    )


@register_model(family="torchvision", supports=_TORCHVISION_KWARGS)
def densenet121(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    dropout: float = 0.0,
    pretrained: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """torchvision DenseNet-121 with grey first conv (``features.conv0``) and new head (``classifier``)."""
    del image_size
    return _build_torchvision(
        "densenet121",
        torchvision.models.densenet121,
        "features.conv0",
        "classifier",
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
    )


@register_model(family="torchvision", supports=_TORCHVISION_KWARGS)
def efficientnet_b0(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    dropout: float = 0.0,
    pretrained: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """torchvision EfficientNet-B0 with grey first conv (``features.0.0``) and new head (``classifier``).

    The head replaces torchvision's ``Dropout(0.2) + Linear``; pass ``dropout=0.2`` to match it.
    """
    del image_size
    return _build_torchvision(
        "efficientnet_b0",
        torchvision.models.efficientnet_b0,
        "features.0.0",
        "classifier",
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
    )
