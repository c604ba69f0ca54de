"""A test-only search space, ``smoke``: the cheapest trials, plus trials that fail on purpose.

The cluster and failure tests need trials that finish in seconds on 2 cores and, in chosen positions, trials that
fail in a known way. ``CXR_SMOKE_PLAN`` (read in the driver, where Optuna calls the space) names the kind of each trial
by its number, comma-separated; trials past the end of the plan are ``ok``:

* ``ok``   TinyVGG at half width, 64x64 grey, batch 32, Adam with a sampled learning rate (about a second an epoch);
* ``slow`` the same at double width and 96x112 (several seconds an epoch: time to act "mid-epoch");
* ``nan``  SGD with learning rate 1e4: the loss becomes non-finite within a few steps (``NonFiniteLossError``);
* ``oom``  TinyVGG 30000x wide: its second convolution asks for a 3.2 TB weight tensor, which the allocator cannot
  get (run it only under an address-space limit, see ``clusterlib.address_space_limit``).

``tests/search_driver.py`` registers the space (:func:`register`) before calling ``search.run``; a study's test takes
a kind's config as its base (:func:`kind_config`).
"""

from __future__ import annotations

import os
from typing import Any

from optuna.trial import BaseTrial

from spaces.profiles import Profile
from spaces.registry import list_spaces, register_space
from trainables.config import TrialConfig

PLAN_ENV = "CXR_SMOKE_PLAN"
KINDS = ("ok", "slow", "nan", "oom")

# TinyVGG at half width on TrialConfig's defaults (64x64 grey, batch 32, Adam); the space samples lr, the search sets
# epochs and seed.
_BASE: dict[str, Any] = {
    **{k: v for k, v in TrialConfig().to_dict().items() if k not in ("lr", "epochs", "seed", "recipe")},
    "width": 0.5,
    "dropout": 0.0,
}

_KIND_CONFIG: dict[str, dict[str, Any]] = {
    "ok": {},
    "slow": {"width": 2.0, "image_size": "96x112", "batch_size": 16},
    "nan": {"optimizer": "sgd", "lr": 1e4},
    "oom": {"width": 30000.0},
}


def plan() -> list[str]:
    """The kinds named by ``CXR_SMOKE_PLAN``; an unknown kind is an error naming it."""
    kinds = [k.strip() for k in os.environ.get(PLAN_ENV, "").split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"{PLAN_ENV}: unknown trial kind(s) {', '.join(unknown)}; valid: {', '.join(KINDS)}")
    return kinds


def kind_config(kind: str, lr: float) -> dict[str, Any]:
    """The config of a trial of ``kind`` at learning rate ``lr`` (``nan`` sets its own); epochs and seed unset."""
    return {**_BASE, "lr": lr, **_KIND_CONFIG[kind]}


def smoke(trial: BaseTrial, profile: Profile, pretrained_available: frozenset[str]) -> dict[str, Any]:
    """The config of trial number ``trial.number``: its kind from the plan, the learning rate sampled."""
    del profile, pretrained_available
    kinds = plan()
    kind = kinds[trial.number] if trial.number < len(kinds) else "ok"
    return kind_config(kind, trial.suggest_float("lr", 5e-4, 3e-3, log=True))


def register() -> None:
    """Register the space as ``smoke`` (once)."""
    if "smoke" not in list_spaces():
        register_space("smoke", task="pneumonia3class", description="test-only: cheapest trials and failing ones")(
            smoke
        )
