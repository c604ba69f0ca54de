"""Local search around the best trial (search.samplers), through real Optuna studies over the real CPU space."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.samplers import LocalSearchSampler, incumbent, neighbour
from spaces import get_space, recipes_for

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = get_space("pneumonia3class", "cpu")


def _study(share: float, startup: int = 0, seed: int = 0, direction: str = "maximize") -> optuna.Study:
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    return optuna.create_study(
        direction=direction, sampler=LocalSearchSampler(tpe, share=share, n_startup_trials=startup, seed=seed)
    )


def _report(study: optuna.Study, values: list[float], finish: bool = True) -> optuna.Trial:
    """A new trial over the CPU space that reports ``values`` epoch by epoch (and is told COMPLETE)."""
    trial = study.ask()
    SPACE(trial)
    for epoch, v in enumerate(values, start=1):
        trial.report(v, epoch)
    if finish:
        study.tell(trial, values[-1])
    return trial


def test_a_local_trial_is_the_best_trial_with_one_to_three_choices_moved() -> None:
    study = _study(share=1.0, startup=3)
    for v in (0.50, 0.71, 0.60):  # startup trials: the base sampler's
        _report(study, [v * 0.8, v])
    best = study.trials[1]
    for _ in range(12):
        trial = _report(study, [0.3])
        local = study.trials[trial.number]
        assert local.user_attrs["proposal"] == "local" and local.user_attrs["incumbent"] == best.number
        moved = set(local.user_attrs["moved"])
        assert 1 <= len(moved) <= 3 and moved <= set(best.params)
        for name, value in best.params.items():
            if name not in moved:
                assert local.params.get(name, value) == value, name  # a moved model may drop branch parameters
        assert all(local.params.get(n) != best.params[n] for n in moved), "every moved choice changed"
    assert all("proposal" not in t.user_attrs for t in study.trials[:3]), "startup trials are the base sampler's"


def test_the_incumbent_is_the_best_epoch_so_far_running_trials_included_in_the_metric_direction() -> None:
    study = _study(share=0.0, direction="minimize")
    _report(study, [0.9, 0.7])  # finished, best 0.7
    running = _report(study, [0.8, 0.4], finish=False)  # still running, already better
    pruned = study.ask()
    SPACE(pruned)
    pruned.report(0.2, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    assert incumbent(study).number == pruned.number
    assert incumbent(study, [study.trials[0], study.trials[running.number]]).number == running.number
    assert incumbent(_study(share=0.0)) is None


def test_recipes_are_never_moved_and_share_zero_is_the_base_sampler_unchanged() -> None:
    study = _study(share=1.0)
    recipe = {k: v for k, v in recipes_for("cpu")[0].config.items() if k not in ("recipe",)}
    _report(study, [0.6])
    study.enqueue_trial(recipe, skip_if_exists=False)
    trial = study.ask()
    config = SPACE(trial)
    assert config["recipe"] == recipes_for("cpu")[0].config["recipe"] and "proposal" not in trial.user_attrs

    plain = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=4, n_startup_trials=2))
    wrapped = _study(share=0.0, startup=2, seed=4)
    for s in (plain, wrapped):
        for v in (0.4, 0.6, 0.5, 0.7, 0.55):
            _report(s, [v])
    assert [t.params for t in plain.trials] == [t.params for t in wrapped.trials]


def test_neighbours_step_to_the_next_ordered_choice_or_another_choice_and_stay_in_range() -> None:
    rng = np.random.RandomState(0)
    sizes = CategoricalDistribution((8, 16, 32, 35, 64, 128))
    assert {neighbour(32, sizes, rng) for _ in range(50)} == {16, 35}
    assert {neighbour(128, sizes, rng) for _ in range(20)} == {64}
    models = CategoricalDistribution(("tinyvgg", "cifar_cnn", "resnet18"))
    assert {neighbour("resnet18", models, rng) for _ in range(50)} == {"tinyvgg", "cifar_cnn"}
    flags = CategoricalDistribution((False, True))
    assert neighbour(True, flags, rng) is False
    lr = FloatDistribution(1e-5, 1e-1, log=True)
    moves = [neighbour(1e-3, lr, rng) for _ in range(200)]
    assert all(1e-5 <= m <= 1e-1 for m in moves)
    spread = np.std(np.log(moves))
    assert 0.5 < spread < 1.5, f"a log step of ~0.1 of the log range, got {spread:.2f}"
    assert neighbour(1e-1, lr, rng) <= 1e-1
    epochs = IntDistribution(1, 10)
    assert all(isinstance(m, int) and 1 <= m <= 10 for m in (neighbour(5, epochs, rng) for _ in range(50)))


@pytest.mark.parametrize(
    ("share", "pattern"), [(0.5, "LBLBLBLB"), (0.25, "LBBBLBBB"), (1.0, "LLLLLLLL"), (0.0, "BBBBBBBB")]
)
def test_the_share_of_local_trials_is_interleaved_evenly_from_the_first_proposal(share: float, pattern: str) -> None:
    """A short search makes a handful of proposals: the share holds in every window, not only on average."""
    study = _study(share=share, startup=2)
    for v in (0.5, 0.6):
        _report(study, [v])
    for _ in pattern:
        _report(study, [0.4])
    seen = "".join("L" if t.user_attrs.get("proposal") == "local" else "B" for t in study.trials[2:])
    assert seen == pattern


@pytest.mark.parametrize("share", [-0.1, 1.1, math.nan])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        LocalSearchSampler(optuna.samplers.RandomSampler(), share=share)
