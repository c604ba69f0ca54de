"""The torchvision transfer-learning models, registered from one table: name, constructor, weights, first conv, head.

Each gets a 1-channel first conv for grey input (the RGB kernel summed when pretrained) and a new classification head;
each accepts ``dropout`` (before the head), ``pretrained`` (ImageNet weights read from the local torch hub cache, which
:mod:`trainables.weights` fills; a model never downloads while it is built) and ``freeze_backbone`` (train only the
head). EfficientNet's new head replaces torchvision's
``Dropout(0.2) + Linear``: pass ``dropout=0.2`` to match it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from trainables.models.registry import register_model
from trainables.models.training import mark_built
from trainables.weights import PretrainedWeightsMissing, pretrained_weights_path

__all__ = ["TORCHVISION_MODELS", "TorchvisionModel", "build_torchvision"]


@dataclass(frozen=True)
class TorchvisionModel:
    """One row of the table: how to build the model and which submodules to replace."""

    name: str
    constructor: Callable[..., nn.Module]
    weights: type[torchvision.models.WeightsEnum]  # only ``.DEFAULT.url`` is used (see trainables.weights)
    first_conv: str
    head: str


TORCHVISION_MODELS: dict[str, TorchvisionModel] = {
    m.name: m
    for m in (
        TorchvisionModel("resnet18", torchvision.models.resnet18, torchvision.models.ResNet18_Weights, "conv1", "fc"),
        TorchvisionModel("resnet50", torchvision.models.resnet50, torchvision.models.ResNet50_Weights, "conv1", "fc"),
        TorchvisionModel(
            "densenet121",
            torchvision.models.densenet121,
            torchvision.models.DenseNet121_Weights,
            "features.conv0",
            "classifier",
        ),
        TorchvisionModel(
            "efficientnet_b0",
            torchvision.models.efficientnet_b0,
            torchvision.models.EfficientNet_B0_Weights,
            "features.0.0",
            "classifier",
        ),
    )
}

_KWARGS = frozenset({"dropout", "pretrained", "freeze_backbone"})

# The DenseNet checkpoints torchvision publishes name layers "norm.1" instead of "norm1" (and predate
# BatchNorm's num_batches_tracked buffer, which load_state_dict fills in itself).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


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


def build_torchvision(
    row: TorchvisionModel,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    dropout: float = 0.0,
    pretrained: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """Build ``row``'s model without downloading, load local weights, then swap first conv and head."""
    del image_size  # global pooling makes every one size independent
    path = pretrained_weights_path(row.name) if pretrained else None
    if path is not None and not path.is_file():
        raise PretrainedWeightsMissing(row.name, path, row.weights.DEFAULT.url)
    model = row.constructor(weights=None)
    if path is not None:
        _load_pretrained(model, row.name, path)
    if in_channels == 1:
        model.set_submodule(row.first_conv, _grey_conv(model.get_submodule(row.first_conv), copy_weights=pretrained))
    old_head = model.get_submodule(row.head)
    in_features = [m for m in old_head.modules() if isinstance(m, nn.Linear)][-1].in_features
    linear = nn.Linear(in_features, num_classes)
    model.set_submodule(row.head, nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear)
    if freeze_backbone:
        head_params = {id(p) for p in model.get_submodule(row.head).parameters()}
        for param in model.parameters():
            param.requires_grad_(id(param) in head_params)
    return mark_built(model, row.head, frozen_backbone=freeze_backbone)


for _row in TORCHVISION_MODELS.values():
    register_model(_row.name, family="torchvision", supports=_KWARGS)(functools.partial(build_torchvision, _row))
