"""Optuna TPE inside Ray Tune, told the truth about each trial.

Ray's ``OptunaSearch`` records every trial that ends without an error as COMPLETE with the metric of its *last*
epoch, ASHA's early stops included. So TPE learns from one-epoch scores as if they were finished results, and the
value it keeps for a trial is not the one the search ranks it by. Here a trial that stopped before ``max_epochs``
(ASHA, the time budget) is PRUNED (Optuna's TPE then weighs it by its intermediate values, as Optuna's own pruners
intend), and a finished trial's value is the one the ranking rule counts (``runstore.ranking.counting_epoch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from runstore.ranking import counting_epoch

__all__ = ["RankedOptunaSearch", "close_running_trials", "trial_outcome"]


def trial_outcome(values: dict[int, float], max_epochs: int, mode: str, error: bool) -> tuple[str, float | None]:
    """(Optuna state name, value) of a trial from its per-epoch values: FAIL on error, PRUNED when it stopped
    before ``max_epochs``, else COMPLETE at the epoch that counts."""
    counted = counting_epoch(values, mode)
    if error:
        return "FAIL", None
    if counted is None or max(values, default=0) < max_epochs:
        return "PRUNED", None
    return "COMPLETE", counted[1]


class RankedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose trials end PRUNED when stopped early and COMPLETE at their best epoch otherwise."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = int(max_epochs)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or isinstance(self.metric, list):
            return super().on_trial_complete(trial_id, result, error)
        from optuna.trial import TrialState

        ot_trial = self._ot_trials[trial_id]
        values = dict(self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values)
        # Tune hands a trial's last result to on_trial_complete only (never to on_trial_result): record it too.
        step, last = (result or {}).get("training_iteration"), (result or {}).get(self.metric)
        if step is not None and last is not None and int(step) not in values:
            ot_trial.report(float(last), int(step))
            values[int(step)] = float(last)
        state, value = trial_outcome(values, self.max_epochs, self.mode, error)
        self._ot_study.tell(ot_trial, value, state=TrialState[state])
        self._completed_trials.add(trial_id)


def close_running_trials(study_db: Path, study_name: str) -> int:
    """Mark PRUNED every trial a finished search left RUNNING in its study (Tune never reports completion for trials
    its time budget stops), so the study says what happened to them; returns how many."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{study_db}")
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for t in running:
        study.tell(t.number, state=TrialState.PRUNED)
    return len(running)
