"""The finite choice lists a search space draws from, per kind of machine: ``cpu`` keeps to choices that finish.

A profile is decided outside the space (by the search, from the hardware) and bound to it, so the space stays a plain
``(trial) -> dict``. Every categorical list is a constant of its profile: Optuna refuses a categorical parameter whose
choices change between trials of one study. The ``cpu`` profile is sized from measured epoch times so the default CPU
search finishes in about ten minutes on 2 cores (the table is in the README, "CPU epoch times"); ``gpu`` is the full
space.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from trainables.cache import ImageSpec
from trainables.models import list_models, model_info
from trainables.registry import Registry

__all__ = ["CPU", "GPU", "PROFILES", "Profile", "check_pretrained_available", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """The choices a space may propose on one kind of machine.

    ``image_sizes`` x ``channels`` x ``resize`` is every image spec the space can ask for (each is decoded once before
    trials start, so the product is kept small). ``widths`` maps each seed CNN to its (low, high) channel multiplier,
    searched on a log scale. ``note`` says what the profile leaves out and why; the search logs it.
    """

    name: str
    models: tuple[str, ...]
    image_sizes: tuple[str, ...]
    channels: tuple[int, ...]
    resize: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    widths: dict[str, tuple[float, float]] = field(hash=False)
    note: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.models) - set(list_models()))
        if unknown:
            raise ValueError(f"profile {self.name!r} names unknown model(s) {', '.join(unknown)}")
        for model in self.models:
            if "width" in model_info(model).supports and model not in self.widths:
                raise ValueError(f"profile {self.name!r} gives no width range for {model}")
        self.image_specs()  # every combination must be a valid ImageSpec

    def image_specs(self) -> tuple[ImageSpec, ...]:
        """Every (size, channels, resize) combination this profile's choices can produce, sorted."""
        specs = set()
        for size, channels, resize in itertools.product(self.image_sizes, self.channels, self.resize):
            h, w = ImageSpec.parse_size(size)
            specs.add(ImageSpec(h, w, channels, resize))
        return tuple(sorted(specs, key=_spec_key))


def _spec_key(spec: ImageSpec) -> tuple[int, int, int, str]:
    return spec.height, spec.width, spec.channels, spec.resize


CPU = Profile(
    name="cpu",
    models=("tinyvgg", "cifar_cnn", "alexnet_gray", "resnet18"),
    image_sizes=("64", "96", "96x112"),
    channels=(1,),
    resize=("stretch", "pad"),
    batch_sizes=(8, 16, 32, 35, 64, 128),
    widths={"tinyvgg": (0.5, 2.0), "cifar_cnn": (0.25, 0.5), "alexnet_gray": (0.25, 0.5)},
    note=(
        "no GPU: the cpu profile keeps to choices that finish on a CPU (models tinyvgg, cifar_cnn and alexnet_gray "
        "at reduced width, resnet18; grey images up to 96x112; batches of 8 or more; seed recipes scaled down to "
        "match); run on a GPU machine for the full space (all models, RGB, 224 and 256x300 pixels, batch 1 to 300)"
    ),
)

# "64" is there for the seed TinyVGG (64x64); "crop" is left out of both profiles because a centre crop of a
# non-square film cuts off the lung edges (costophrenic angles) a radiologist reads. The 16 image specs take ~1.2 MB
# an image together (~7 GB for the 5,856-image Kaggle set), most of it the RGB 224 and 256x300 arrays.
GPU = Profile(
    name="gpu",
    models=tuple(list_models()),
    image_sizes=("64", "128", "224", "256x300"),
    channels=(1, 3),
    resize=("stretch", "pad"),
    batch_sizes=(1, 4, 8, 16, 32, 35, 64, 128, 256, 300),
    widths={"tinyvgg": (0.5, 4.0), "cifar_cnn": (0.25, 2.0), "alexnet_gray": (0.25, 1.5)},
)

PROFILES: Registry[Profile] = Registry("profile")
for _profile in (CPU, GPU):
    PROFILES.register(_profile.name, _profile)


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ``ValueError`` listing the valid names if it is unknown."""
    return PROFILES.get(name)


def check_pretrained_available(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a frozenset, after checking each is a model that has ImageNet weights (a torchvision one)."""
    if isinstance(names, str):
        raise TypeError(f"pretrained_available must be a collection of model names, got the string {names!r}")
    names = frozenset(names)
    with_weights = [m for m in list_models() if model_info(m).family == "torchvision"]
    for model in sorted(names):
        model_info(model)  # unknown name -> ValueError listing the valid ones
        if model not in with_weights:
            raise ValueError(
                f"pretrained_available names {model!r}, which has no pretrained weights "
                f"(only torchvision models do: {', '.join(with_weights)})"
            )
    return names
