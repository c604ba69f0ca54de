"""The effect studies: what each one varies, its levels, its base config, and how a level becomes a trial's config.

A study answers one seed project's question with a controlled experiment: one factor on a grid, everything else held
at a base config, each level repeated over seeds (which vary initialisation, augmentation draws and batch order; the
patient-level validation split stays fixed), every trial trained the same number of epochs. Pure: Ray is imported only
nowhere here, so the definitions and the flag checks run before any cluster starts.

A trial's config holds the TrialConfig fields a level sets (``batch_size`` and the ``lr`` its rule gives; the
augmentation fields) and the level itself under a study-only key (``lr_rule``, ``augmentation``), so both reach
``params.json`` and ``trials.csv``; :func:`study_trial` strips the study-only keys before the config becomes a
``TrialConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from runstore.errors import UserError
from trainables.augment_config import AugmentConfig

__all__ = [
    "AUGMENT_LEVELS",
    "LEVEL_KEYS",
    "LR_RULES",
    "STUDIES",
    "Study",
    "get_study",
    "level_config",
    "level_lr",
    "parse_levels",
    "parse_lr_rules",
    "study_trial",
    "trial_configs",
]

#: How the learning rate follows the batch size b (b0: the base's batch size, lr0: its rate).
LR_RULES: dict[str, str] = {
    "fixed": "lr0 at every batch size (what the seed project did)",
    "linear": "lr0 * b / b0 (Goyal et al. 2017)",
    "sqrt": "lr0 * sqrt(b / b0) (Krizhevsky 2014; Hoffer et al. 2017)",
}

#: Each augmentation level: the ops it turns on and at what strength; the fields it leaves out are off.
AUGMENT_LEVELS: dict[str, dict[str, Any]] = {
    "none": {},
    # The seed TinyVGG's (000): RandomHorizontalFlip + TrivialAugmentWide.
    "seed": {"hflip": 0.5, "trivial_augment": True},
    # Each op alone at a stated strength: the flips at p = 0.5; rotation, brightness and contrast as the seed
    # AlexNet (004) used them (RandomRotation(15), ColorJitter 0.2; here rotated images are reflection-padded, so they
    # have no black corners); a random resized crop keeping 50-100% of the area.
    "hflip": {"hflip": 0.5},
    "vflip": {"vflip": 0.5},
    "rotate": {"rotate": 15.0},
    "brightness": {"brightness": 0.2},
    "contrast": {"contrast": 0.2},
    "trivial_augment": {"trivial_augment": True},
    "crop_scale": {"crop_scale": 0.5},
}
AUGMENT_LEVELS["all"] = {
    k: v for name, ops in AUGMENT_LEVELS.items() if name not in ("none", "seed") for k, v in ops.items()
}
_OPS = [f.name for f in fields(AugmentConfig)]
if sorted(AUGMENT_LEVELS["all"]) != sorted(_OPS):  # a new augmentation op needs its level here
    raise RuntimeError(f"AUGMENT_LEVELS must give every augmentation op a level: {', '.join(_OPS)}")

#: The study-only keys of a trial's config: the level, kept beside the TrialConfig fields it sets.
LEVEL_KEYS = ("augmentation", "lr_rule")


@dataclass(frozen=True)
class Study:
    """One effect study: the ``factor`` it varies, the seed ``recipe`` it holds everything else at by default, its
    default ``levels`` (``cpu_levels``: the CPU profile's, when a subset must do to finish there) and ``epochs`` per
    profile, the changes to its base on a profile beyond the search's (``adaptations``) and the seed ``claim``."""

    name: str
    factor: str
    recipe: str
    levels: tuple[Any, ...]
    epochs: dict[str, int]
    claim: str
    cpu_levels: tuple[Any, ...] | None = None
    adaptations: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict, hash=False)

    def default_levels(self, profile: str) -> list[Any]:
        return list(self.cpu_levels if profile == "cpu" and self.cpu_levels else self.levels)


BATCH_SIZE = Study(
    name="batch-size",
    factor="batch_size",
    recipe="seed_alexnet_gray",
    levels=(1, 8, 35, 128, 300),
    epochs={"cpu": 6, "gpu": 30},
    claim=(
        "004 (AlexNet-like, grey 256x300): batch 35 is a sweet spot; at batch 300, and again at batch 1, accuracy "
        "stuck at around 49% for a long time before slowly increasing"
    ),
    adaptations={
        "cpu": (
            {"image_size": "64", "width": 0.25},
            "64x64 at quarter width instead of 96x112 at half width: batch 1 takes ~39 s an epoch that way on one "
            "core (~257 s at 96x112, half width), so 5 batch sizes x 3 seeds finish within 15 minutes on 2 cores",
        )
    },
)

AUGMENTATION = Study(
    name="augmentation",
    factor="augmentation",
    recipe="seed_tinyvgg",
    levels=tuple(AUGMENT_LEVELS),
    cpu_levels=("none", "seed", "all", "hflip", "rotate", "trivial_augment"),
    epochs={"cpu": 20, "gpu": 60},
    claim=(
        "000 (TinyVGG, horizontal flip + TrivialAugmentWide): a slight tendency to overfit remained; "
        "004 (AlexNet-like): heavy augmentation (rotation with black margins among it) ended at 94% train / 65% "
        "test accuracy"
    ),
)

#: The studies by name (``python -m search.study NAME``).
STUDIES: dict[str, Study] = {s.name: s for s in (BATCH_SIZE, AUGMENTATION)}


def get_study(name: str) -> Study:
    """The study called ``name``; a ``UserError`` listing the valid ones otherwise."""
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def parse_levels(study: Study, text: str | None, profile: str) -> list[Any]:
    """``--levels a,b,c`` of ``study`` (batch sizes 1-300, or augmentation level names); the profile's default when
    ``None``. Batch sizes come back sorted (the slowest, batch 1, first)."""
    if text is None:
        return study.default_levels(profile)
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or "" in items:
        raise UserError(f"--levels: {text!r} is not a comma-separated list of levels (e.g. {_example(study)})")
    if len(set(items)) != len(items):
        raise UserError(f"--levels: {text!r} names a level twice")
    if study.factor == "batch_size":
        sizes = []
        for item in items:
            if not item.isdigit() or not 1 <= int(item) <= 300:
                raise UserError(f"--levels: batch size {item!r} is not a whole number from 1 to 300")
            sizes.append(int(item))
        if len(set(sizes)) != len(sizes):
            raise UserError(f"--levels: {text!r} names a batch size twice")
        return sorted(sizes)
    unknown = [item for item in items if item not in AUGMENT_LEVELS]
    if unknown:
        raise UserError(
            f"--levels: unknown augmentation level(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(AUGMENT_LEVELS)}"
        )
    return items


def _example(study: Study) -> str:
    return ",".join(str(v) for v in study.levels[:3])


def parse_lr_rules(study: Study, text: str | None) -> list[str] | None:
    """``--lr-rule fixed,linear,sqrt`` (batch-size only); ``None`` when not given (the rate stays fixed and is no
    factor of the study)."""
    if text is None:
        return None
    if study.factor != "batch_size":
        raise UserError(f"--lr-rule applies to the batch-size study only, not to {study.name}")
    rules = [t.strip() for t in text.split(",")]
    bad = [r for r in rules if r not in LR_RULES]
    if bad or not rules:
        raise UserError(f"--lr-rule: unknown rule(s) {', '.join(map(repr, bad))}; valid: {', '.join(LR_RULES)}")
    if len(set(rules)) != len(rules):
        raise UserError(f"--lr-rule: {text!r} names a rule twice")
    return rules


def level_lr(lr0: float, b0: int, batch_size: int, rule: str) -> float:
    """The learning rate at ``batch_size`` under ``rule`` (see :data:`LR_RULES`)."""
    if rule == "linear":
        return lr0 * batch_size / b0
    if rule == "sqrt":
        return lr0 * math.sqrt(batch_size / b0)
    return lr0


def level_config(study: Study, base: dict[str, Any], level: Any, lr_rule: str | None = None) -> dict[str, Any]:
    """The config of ``base`` at ``level`` (and learning-rate rule): the TrialConfig fields the level sets, and the
    level itself under its study-only key when it is not a TrialConfig field."""
    config = dict(base)
    if study.factor == "batch_size":
        config["batch_size"] = int(level)
        if lr_rule is not None:
            config["lr_rule"] = lr_rule
            config["lr"] = level_lr(float(base["lr"]), int(base["batch_size"]), int(level), lr_rule)
    else:
        config.update({f.name: f.default for f in fields(AugmentConfig)})
        config.update(AUGMENT_LEVELS[level])
        config["augmentation"] = level
    return config


def trial_configs(
    study: Study, base: dict[str, Any], levels: list[Any], seeds: list[int], lr_rules: list[str] | None
) -> list[dict[str, Any]]:
    """Every trial's config, level x (rule x) seed, in the order given: Ray Tune runs them as they are (its
    ``points_to_evaluate``), so ``params.json`` holds what each trial trained with and nothing is resolved on resume.
    Batch sizes come sorted, so the slowest trials (batch 1) start first and the study ends sooner."""
    return [
        {**level_config(study, base, level, rule), "seed": seed}
        for level in levels
        for rule in (lr_rules or [None])
        for seed in seeds
    ]


def study_trial(config: dict[str, Any], data: Any = None) -> dict[str, Any] | None:
    """The Ray Tune trainable of a study: ``trainables.train.train_fn`` on the config without its study-only keys."""
    from trainables.train import train_fn

    return train_fn({k: v for k, v in config.items() if k not in LEVEL_KEYS}, data)
