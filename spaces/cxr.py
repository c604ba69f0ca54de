"""The chest X-ray search spaces: ``pneumonia3class``, ``pneumonia2class`` and ``cxr4class``.

Each is a plain define-by-run function that only calls ``trial.suggest_*`` and returns constants. It covers the
architecture (every model of the profile, with its own width/dropout/pretrained/freeze choices), the optimiser,
the batch size, the image spec (size, channels, resize policy), per-image intensity standardisation and the
augmentation. The profile (``cpu``/``gpu``)
supplies the lists that depend on the machine; everything else is a constant below.

Every parameter name is the ``TrialConfig`` field it sets, because Ray's ``OptunaSearch`` puts every suggested name
into the trial config (see ``spaces.registry``). That rules out a separate on/off switch plus a strength for an
augmentation (the switch would be an extra config key), so each augmentation is one categorical whose first level
is "off" (``rotate`` 0, ``crop_scale`` 1.0, ...) and whose other levels are strengths: on/off and strength in one
choice, and a study parameter that reads the same in optuna-dashboard as in the trial config.

The three spaces search the same things: the tasks differ in their labels (``SpaceInfo.task``), not in which
models, optimisers or augmentations make sense for chest X-rays.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import BaseTrial

from spaces.profiles import Profile
from spaces.registry import register_space
from trainables.config import CLASS_WEIGHTS, OPTIMIZERS, SCHEDULES
from trainables.intensity import INTENSITY
from trainables.models import model_info

__all__ = [
    "CROP_SCALES",
    "DROPOUT_RANGE",
    "FLIP_PROBS",
    "GRAD_CLIPS",
    "JITTERS",
    "LABEL_SMOOTHINGS",
    "LR_RANGES",
    "MOMENTUM_RANGE",
    "ROTATIONS",
    "WEIGHT_DECAYS",
    "cxr4class",
    "pneumonia2class",
    "pneumonia3class",
    "suggest_cxr_config",
]

#: Learning-rate range (log scale) per optimiser: SGD wants ~10x larger steps than the Adam family.
LR_RANGES: dict[str, tuple[float, float]] = {"sgd": (1e-3, 0.3), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)}
#: Weight decay: off, or a decade from 1e-6 to 1e-2 (a decade grid is as fine as weight decay needs).
WEIGHT_DECAYS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: SGD momentum range (only SGD uses it).
MOMENTUM_RANGE = (0.8, 0.99)
GRAD_CLIPS = (0.0, 0.1, 1.0, 5.0)
LABEL_SMOOTHINGS = (0.0, 0.05, 0.1)
#: Dropout before the classifier, for every model (0 turns it off).
DROPOUT_RANGE = (0.0, 0.5)
#: Augmentation levels; the first of each is "off".
FLIP_PROBS = (0.0, 0.5)
ROTATIONS = (0.0, 5.0, 10.0, 15.0)
JITTERS = (0.0, 0.1, 0.2, 0.3)
CROP_SCALES = (1.0, 0.9, 0.75, 0.6)
_BOOLS = (False, True)


def suggest_cxr_config(trial: BaseTrial, profile: Profile, pretrained_available: frozenset[str]) -> dict[str, Any]:
    """One chest X-ray classifier config from ``profile``'s choices: every ``TrialConfig`` field but epochs and seed.

    Fields a branch does not search are returned as constants (the ``TrialConfig`` default or "not used"), so every
    trial's config has the same keys and reads the same in a results table.
    """
    model = trial.suggest_categorical("model", profile.models)
    supports = model_info(model).supports
    width = dropout = None
    pretrained = freeze_backbone = False
    if "width" in supports:
        low, high = profile.widths[model]
        width = trial.suggest_float("width", low, high, log=True)
    if "dropout" in supports:
        dropout = trial.suggest_float("dropout", *DROPOUT_RANGE)
    if "pretrained" in supports and model in pretrained_available:
        pretrained = trial.suggest_categorical("pretrained", _BOOLS)
        if pretrained:
            freeze_backbone = trial.suggest_categorical("freeze_backbone", _BOOLS)

    optimizer = trial.suggest_categorical("optimizer", OPTIMIZERS)
    lr = trial.suggest_float("lr", *LR_RANGES[optimizer], log=True)
    weight_decay = trial.suggest_categorical("weight_decay", WEIGHT_DECAYS)
    momentum, nesterov = 0.9, False  # TrialConfig's defaults; the Adam family ignores both
    if optimizer == "sgd":
        momentum = trial.suggest_float("momentum", *MOMENTUM_RANGE)
        nesterov = trial.suggest_categorical("nesterov", _BOOLS)

    return {
        "model": model,
        "width": width,
        "dropout": dropout,
        "pretrained": pretrained,
        "freeze_backbone": freeze_backbone,
        "optimizer": optimizer,
        "lr": lr,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "nesterov": nesterov,
        "schedule": trial.suggest_categorical("schedule", SCHEDULES),
        "grad_clip": trial.suggest_categorical("grad_clip", GRAD_CLIPS),
        "label_smoothing": trial.suggest_categorical("label_smoothing", LABEL_SMOOTHINGS),
        # Not searched: weight averaging raises early-epoch scores, not final ones, so ASHA's early rungs would favour
        # it for nothing (README, "Weight averaging").
        "ema_epochs": 0.0,
        "class_weights": trial.suggest_categorical("class_weights", CLASS_WEIGHTS),
        "batch_size": trial.suggest_categorical("batch_size", profile.batch_sizes),
        "image_size": trial.suggest_categorical("image_size", profile.image_sizes),
        "channels": trial.suggest_categorical("channels", profile.channels),
        "resize": trial.suggest_categorical("resize", profile.resize),
        "hflip": trial.suggest_categorical("hflip", FLIP_PROBS),
        "vflip": trial.suggest_categorical("vflip", FLIP_PROBS),
        "rotate": trial.suggest_categorical("rotate", ROTATIONS),
        "brightness": trial.suggest_categorical("brightness", JITTERS),
        "contrast": trial.suggest_categorical("contrast", JITTERS),
        "trivial_augment": trial.suggest_categorical("trivial_augment", _BOOLS),
        "crop_scale": trial.suggest_categorical("crop_scale", CROP_SCALES),
        "intensity": trial.suggest_categorical("intensity", INTENSITY),
    }


@register_space(
    task="pneumonia3class",
    description="Kaggle chest_xray layout, three classes: normal / bacterial / viral pneumonia (from file names)",
)
def pneumonia3class(trial: BaseTrial, profile: Profile, pretrained_available: frozenset[str]) -> dict[str, Any]:
    """Normal vs bacterial vs viral pneumonia: the hard split (viral and bacterial look alike on film)."""
    return suggest_cxr_config(trial, profile, pretrained_available)


@register_space(
    task="pneumonia2class",
    description="Kaggle chest_xray layout, two classes: normal / pneumonia",
)
def pneumonia2class(trial: BaseTrial, profile: Profile, pretrained_available: frozenset[str]) -> dict[str, Any]:
    """Normal vs pneumonia, the Kaggle data set's own labels."""
    return suggest_cxr_config(trial, profile, pretrained_available)


@register_space(
    task="folders",
    description="one sub-folder per class, e.g. COVID19 / NORMAL / PNEUMONIA / TUBERCULOSIS",
)
def cxr4class(trial: BaseTrial, profile: Profile, pretrained_available: frozenset[str]) -> dict[str, Any]:
    """Four-class folder data sets (COVID-19, normal, pneumonia, tuberculosis), mixed sources and aspect ratios."""
    return suggest_cxr_config(trial, profile, pretrained_available)
