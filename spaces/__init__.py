"""Optuna define-by-run search spaces for chest X-ray classifiers, registered by name, and the seed recipes.

    from spaces import get_space, image_specs, recipes_for

    space = get_space("pneumonia3class", profile="cpu", pretrained_available={"resnet18"})
    specs = image_specs("pneumonia3class", "cpu")       # decode each once before trials start
    recipes = recipes_for("cpu", {"resnet18"})          # evaluate these first: points_to_evaluate
    OptunaSearch(space=space, metric=space.info.metric, mode=space.info.mode,
                 points_to_evaluate=[r.config for r in recipes])

    Tuner(..., param_space={"epochs": 8, "seed": 0})    # constants Tune merges into every suggested config

A space only calls ``trial.suggest_*`` and returns constants: no training, no I/O. Its parameter names are
``TrialConfig`` field names, because Ray's ``OptunaSearch`` copies every suggested name into the trial config
(details in :mod:`spaces.registry`). It returns every ``TrialConfig`` field but ``epochs`` and ``seed``, with
``recipe`` set to the recipe's label for an enqueued recipe and ``""`` otherwise. The spaces are conditional (per
model, per optimiser), so ``TPESampler(multivariate=True, group=True)`` models each branch jointly; the tests run it.
"""

from __future__ import annotations

from spaces.cxr import cxr4class, pneumonia2class, pneumonia3class, suggest_cxr_config
from spaces.profiles import CPU, GPU, PROFILES, Profile, check_pretrained_available, get_profile
from spaces.recipes import ADAPTATIONS, RECIPES, Recipe, recipes_for
from spaces.registry import (
    Space,
    SpaceFunction,
    SpaceInfo,
    get_space,
    image_specs,
    list_spaces,
    register_space,
    space_info,
)

__all__ = [
    "ADAPTATIONS",
    "CPU",
    "GPU",
    "PROFILES",
    "RECIPES",
    "Profile",
    "Recipe",
    "Space",
    "SpaceFunction",
    "SpaceInfo",
    "check_pretrained_available",
    "cxr4class",
    "get_profile",
    "get_space",
    "image_specs",
    "list_spaces",
    "pneumonia2class",
    "pneumonia3class",
    "recipes_for",
    "register_space",
    "space_info",
    "suggest_cxr_config",
]
