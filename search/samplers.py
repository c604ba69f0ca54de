"""``LocalSearchSampler``: an Optuna sampler that spends a share of the proposals next to the best trial so far.

A short CPU search proposes some twenty configurations in a space of about twenty-five choices. TPE cannot model that
space from so few trials, so its proposals are close to random ones, and a random point of a wide space rarely beats a
hand-tuned recipe. Model-based searchers that work on small budgets interleave their model's proposals with a local
search around the incumbent (SMAC's local search; the "explore" step of Population Based Training, which perturbs a
good config). This sampler does that for any base sampler: after the startup trials, ``share`` of the new trials
(interleaved evenly, the first one included: every other one at 0.5, as SMAC alternates) are a copy of the best trial
so far (a recipe or a proposal) with one to three of its choices moved to a neighbouring value; the others are the base
sampler's. Even interleaving, not a coin per trial, because a short search makes only a handful of proposals.
Parameters the incumbent does not have (a branch the move opened, e.g. SGD's momentum) come from the base sampler.

"Best so far" is the trial with the best intermediate value reported at any epoch, running trials included: it is the
model a user would pick at that moment. Each local trial carries user attributes ``proposal="local"``,
``incumbent`` (its trial number) and ``moved`` (the parameter names), so the study says where it came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["LocalSearchSampler", "incumbent", "neighbour"]

#: A log-scale float moves by a normal step of this fraction of its log range (lr over 1e-5..1e-1: a factor ~2.5).
FLOAT_STEP = 0.1
_MOVES = (1, 2, 3)  # how many choices a local trial changes, drawn uniformly
_TRIES = 10  # draws of a moved value before one equal to the incumbent's is accepted


def incumbent(study: Study, trials: Sequence[FrozenTrial] | None = None) -> FrozenTrial | None:
    """The trial whose best intermediate value (any epoch, running trials too) is best in the study's direction;
    ``None`` before any trial has reported."""
    best, best_value = None, -math.inf
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    for t in trials if trials is not None else study.get_trials(deepcopy=False, states=states):
        values = [sign * v for v in t.intermediate_values.values() if math.isfinite(v)]
        if t.state in states and values and max(values) > best_value:
            best, best_value = t, max(values)
    return best


def neighbour(value: Any, dist: BaseDistribution, rng: np.random.RandomState) -> Any:
    """A value next to ``value`` in ``dist``: the next or previous choice of an ordered numeric categorical, another
    choice of an unordered one, a normal step (in log space when the distribution is log) for floats and ints."""
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        others = [c for c in choices if c != value]
        if not others:
            return value
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
        if numeric and value in choices:
            ordered = sorted(choices)
            i = ordered.index(value)
            steps = [j for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
            return ordered[steps[rng.randint(len(steps))]]
        return others[rng.randint(len(others))]
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        lo, hi = float(dist.low), float(dist.high)
        if dist.log:
            span = math.log(hi) - math.log(lo)
            moved = math.exp(math.log(float(value)) + rng.normal(0.0, FLOAT_STEP * span))
        else:
            moved = float(value) + rng.normal(0.0, FLOAT_STEP * (hi - lo))
        moved = min(max(moved, lo), hi)
        if dist.step is not None:
            moved = lo + round((moved - lo) / dist.step) * dist.step
        return int(round(moved)) if isinstance(dist, IntDistribution) else float(moved)
    raise TypeError(f"no neighbour rule for {type(dist).__name__}")


class LocalSearchSampler(BaseSampler):
    """``base`` for the first ``n_startup_trials`` and for ``1 - share`` of the rest; the others are moves of one to
    three choices away from the :func:`incumbent`. Enqueued trials (the recipes) are never touched."""

    def __init__(self, base: BaseSampler, share: float, n_startup_trials: int = 0, seed: int | None = None):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        self._base = base
        self._share = share
        self._n_startup = n_startup_trials
        self._rng = np.random.RandomState(seed)
        self._plans: dict[int, tuple[FrozenTrial, frozenset[str]]] = {}
        self._proposals = 0  # trials after the startup ones, recipes excluded

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng.seed()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if "fixed_params" in trial.system_attrs or trial.number < self._n_startup:
            return
        k, self._proposals = self._proposals, self._proposals + 1
        if math.ceil((k + 1) * self._share) <= math.ceil(k * self._share):  # the share, spread evenly from the first
            return
        best = incumbent(study)
        movable = sorted(n for n, d in best.distributions.items() if _has_choice(d)) if best else []
        if not movable:
            return
        k = min(len(movable), _MOVES[self._rng.randint(len(_MOVES))])
        moved = frozenset(movable[i] for i in self._rng.choice(len(movable), size=k, replace=False))
        self._plans[trial.number] = (best, moved)
        for key, value in (("proposal", "local"), ("incumbent", best.number), ("moved", sorted(moved))):
            study._storage.set_trial_user_attr(trial._trial_id, key, value)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial.number in self._plans:
            return {}
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.number in self._plans:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        plan = self._plans.get(trial.number)
        if plan is not None:
            best, moved = plan
            value = best.params.get(param_name)
            if param_name in best.params and _contains(param_distribution, value):
                if param_name not in moved:
                    return value
                for _ in range(_TRIES):  # a float at its bound can be clipped back onto itself: draw again
                    new = neighbour(value, param_distribution, self._rng)
                    if new != value:
                        return new
                return new
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)


def _has_choice(dist: BaseDistribution) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices) > 1
    return not dist.single()


def _contains(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
