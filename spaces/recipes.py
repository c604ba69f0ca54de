"""The seed projects' recipes as named, fixed trial configs; every search evaluates them first.

So each run measures itself against what the seed projects actually did. :data:`RECIPES` holds them as the seeds ran
them (GPU-sized). :func:`recipes_for` adapts them to a profile and to this machine's pretrained weights, and says
what it changed and why so the search can log it:

* ``cpu``: the changes in :data:`ADAPTATIONS` (smaller images, a smaller ResNet, grey input, a half-width AlexNet),
  which keep every recipe inside the cpu profile's choices and at 3-28 s an epoch (measured);
* no local ImageNet weights for a recipe's backbone: ``pretrained=False, freeze_backbone=False`` (a frozen, randomly
  initialised backbone learns nothing), trained from scratch.

An adapted recipe's ``recipe`` label gets a suffix naming the change (``seed_resnet50_frozen@cpu+scratch``).

Each recipe sets every ``TrialConfig`` field except ``epochs`` and ``seed`` (the search sets those for all trials
alike), with the model defaults spelled out (``width=1.0``...): a recipe passed to Optuna as a point to evaluate
fixes every parameter the space suggests, so nothing in it is left to the sampler. The tests check that each
profile's space reproduces each of that profile's recipes exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spaces.profiles import check_pretrained_available, get_profile
from trainables.config import TrialConfig

__all__ = ["ADAPTATIONS", "RECIPES", "Recipe", "recipes_for"]

# TrialConfig's defaults with the seeds' shared choices (RGB input, no dropout); epochs and seed are the search's.
_COMMON: dict[str, Any] = {
    **{k: v for k, v in TrialConfig().to_dict().items() if k not in ("epochs", "seed")},
    "dropout": 0.0,
    "channels": 3,
}

#: The seed recipes as the seed projects ran them, by name (evaluation order).
RECIPES: dict[str, dict[str, Any]] = {
    # CNN Explainer TinyVGG on an ImageFolder (RGB) at 64x64: random horizontal flip + TrivialAugmentWide, Adam 1e-3.
    "seed_tinyvgg": {
        **_COMMON,
        "recipe": "seed_tinyvgg",
        "model": "tinyvgg",
        "width": 1.0,
        "image_size": "64",
        "hflip": 0.5,
        "trivial_augment": True,
    },
    # ImageNet ResNet-50 as a frozen feature extractor, new head trained with Adam and reduce-on-plateau.
    "seed_resnet50_frozen": {
        **_COMMON,
        "recipe": "seed_resnet50_frozen",
        "model": "resnet50",
        "pretrained": True,
        "freeze_backbone": True,
        "schedule": "plateau",
        "image_size": "224",
    },
    # ImageNet ResNet-50 fine-tuned end to end: one-cycle Adam, gradient clip 0.1, weight decay 1e-4, h+v flips.
    "seed_resnet50_onecycle": {
        **_COMMON,
        "recipe": "seed_resnet50_onecycle",
        "model": "resnet50",
        "pretrained": True,
        "schedule": "onecycle",
        "grad_clip": 0.1,
        "weight_decay": 1e-4,
        "image_size": "224",
        "hflip": 0.5,
        "vflip": 0.5,
    },
    # AlexNet-like CNN on grey 256x300 films, batch 35 (it stalled at 1 and at 300), brightness/contrast jitter,
    # rotation and horizontal flip; Adam at 1e-4 because the net has no BatchNorm.
    "seed_alexnet_gray": {
        **_COMMON,
        "recipe": "seed_alexnet_gray",
        "model": "alexnet_gray",
        "width": 1.0,
        "dropout": 0.5,
        "lr": 1e-4,
        "batch_size": 35,
        "image_size": "256x300",
        "channels": 1,
        "hflip": 0.5,
        "rotate": 10.0,
        "brightness": 0.2,
        "contrast": 0.2,
    },
}

#: Per profile, the changes made to each recipe and why (profiles not listed run the recipes unchanged).
ADAPTATIONS: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "cpu": {
        "seed_tinyvgg": (
            {"channels": 1},
            "grey instead of RGB (the cpu profile is grey-only; an X-ray's RGB channels are copies of one grey image)",
        ),
        "seed_resnet50_frozen": (
            {"model": "resnet18", "image_size": "96", "channels": 1},
            "resnet18 at 96 px grey instead of resnet50 at 224 px RGB (resnet50 takes ~57 s an epoch on 2 cores "
            "even at 96 px; resnet18 ~23 s)",
        ),
        "seed_resnet50_onecycle": (
            {"model": "resnet18", "image_size": "96", "channels": 1},
            "resnet18 at 96 px grey instead of resnet50 at 224 px RGB (resnet50 takes ~57 s an epoch on 2 cores "
            "even at 96 px; resnet18 ~23 s)",
        ),
        "seed_alexnet_gray": (
            {"image_size": "96x112", "width": 0.5},
            "96x112 instead of 256x300 (the same aspect ratio) and half width (its 4096-wide classifier takes "
            "~30-35 s an epoch on 2 cores at any image size; half width ~10 s)",
        ),
    },
}


@dataclass(frozen=True)
class Recipe:
    """A recipe ready to run on one profile and machine: its ``config`` and what was changed from the seed, why."""

    name: str
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


def recipes_for(profile: str = "cpu", pretrained_available: Iterable[str] = frozenset()) -> list[Recipe]:
    """Every seed recipe adapted to ``profile`` and to the models whose ImageNet weights this search has.

    Returned in :data:`RECIPES` order, which is the order a search should evaluate them in. Each ``notes`` entry is a
    sentence for the search's log.
    """
    get_profile(profile)  # unknown profile -> ValueError listing the valid ones
    available = check_pretrained_available(pretrained_available)
    out = []
    for name, seed in RECIPES.items():
        config = dict(seed)
        tags: list[str] = []
        notes: list[str] = []
        changes = ADAPTATIONS.get(profile, {}).get(name)
        if changes is not None:
            config.update(changes[0])
            tags.append(profile)
            notes.append(f"{name} on {profile}: {changes[1]}")
        if config["pretrained"] and config["model"] not in available:
            instead = (
                "training a new head on the frozen pretrained backbone"
                if config["freeze_backbone"]
                else "fine-tuning the pretrained weights"
            )
            config["pretrained"] = False
            config["freeze_backbone"] = False
            tags.append("scratch")
            notes.append(
                f"{name}: no ImageNet weights for {config['model']} in this search, so it trains the whole network "
                f"from scratch (pretrained=False, freeze_backbone=False) instead of {instead}"
            )
        if tags:
            config["recipe"] = f"{name}@{'+'.join(tags)}"
        TrialConfig.from_dict(config)  # a broken recipe fails here, naming the key, not inside a trial
        out.append(Recipe(name, config, tuple(notes)))
    return out
