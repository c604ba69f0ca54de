"""Optuna TPE inside Ray Tune, told the truth about each trial.

Ray's ``OptunaSearch`` records every trial that ends without an error as COMPLETE with the metric of its *last*
epoch, ASHA's early stops included. So TPE learns from one-epoch scores as if they were finished results, and the
value it keeps for a trial is not the one the search ranks it by. Here a trial that stopped before ``max_epochs``
(ASHA, the time budget) is PRUNED (Optuna's TPE then weighs it by its intermediate values, as Optuna's own pruners
intend), and a finished trial's value is the one the ranking rule counts (``runstore.ranking.counting_epoch``).

With ``max_epoch_s`` it also keeps to what the budget can afford: a proposal whose estimated epoch
(``spaces.cost.estimate_epoch_s``) is longer is not trained; another is drawn. The skipped trial is told FAIL, with a
``skipped`` note, because TPE leaves FAIL trials out of its model: told PRUNED with no value (the first version) it
counted as a worst result, so the *model* of a dear config (resnet18, too dear at 96 px) looked bad to TPE, not its
image size, and a search proposed no resnet18 at all, not even at the 64 px it could afford. Recipes are never
skipped: they are the baselines.

The estimate comes from a table measured on one machine, and users' machines (or a loaded one) differ: ours ran the
same epochs twice as slowly on one day as on another. So the table's estimate is scaled by this machine's measured
speed: the median, over the trials of the same model that reported epochs so far (recipes included: they run
first), of each trial's median ``epoch_seconds`` over its estimate; over every model's trials for a model not yet
run (models differ: resnet18 ran at 3.4 times the table on one loaded day, TinyVGG at 1.3). Until a trial reports,
the table is taken as it is.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from runstore.metrics import EPOCH_SECONDS
from runstore.ranking import LOSSES_ATTR, TIE_LOSS, counting_epoch
from spaces.cost import estimate_epoch_s

__all__ = ["MAX_REDRAWS", "RankedOptunaSearch", "close_running_trials", "trial_outcome"]

#: Draws per suggestion before an over-budget proposal is trained anyway (the space may be all too dear).
MAX_REDRAWS = 20


def trial_outcome(
    values: dict[int, float], max_epochs: int, mode: str, error: bool, losses: dict[int, float] | None = None
) -> tuple[str, float | None]:
    """(Optuna state name, value) of a trial from its per-epoch values: FAIL on error, PRUNED when it stopped
    before ``max_epochs``, else COMPLETE at the epoch that counts."""
    counted = counting_epoch(values, mode, losses)
    if error:
        return "FAIL", None
    if counted is None or max(values, default=0) < max_epochs:
        return "PRUNED", None
    return "COMPLETE", counted[1]


class RankedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose trials end PRUNED when stopped early and COMPLETE at their best epoch otherwise; with
    ``max_epoch_s``, proposals estimated dearer than that per epoch on this machine are skipped (FAIL unrun, a
    ``skipped`` note) and redrawn."""

    def __init__(self, *args: Any, max_epochs: int, max_epoch_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = int(max_epochs)
        self.max_epoch_s = max_epoch_s
        self._table_s: dict[str, tuple[str, float]] = {}  # trial id -> its model and the cost table's epoch estimate
        self._epoch_s: dict[str, dict[int, float]] = {}  # trial id -> its measured seconds, epoch by epoch

    def speed_factor(self, model: str | None = None) -> float:
        """This machine's epoch time over the cost table's: the median over the trials of ``model`` that reported
        (each its median epoch), else over every trial that reported; 1.0 until one has."""
        ratios: dict[str, list[float]] = {}
        for trial_id, seconds in self._epoch_s.items():
            if seconds:
                table_model, table_s = self._table_s[trial_id]
                ratios.setdefault(table_model, []).append(statistics.median(seconds.values()) / table_s)
        pooled = ratios.get(model) or [r for rs in ratios.values() for r in rs]
        return statistics.median(pooled) if pooled else 1.0

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if self.max_epoch_s is None:
            return config
        for _ in range(MAX_REDRAWS):
            if config is None:
                return None
            table, speed = estimate_epoch_s(config), self.speed_factor(config["model"])
            estimate = table * speed
            if estimate <= self.max_epoch_s or config.get("recipe"):
                break
            from optuna.trial import TrialState

            skipped = self._ot_trials.pop(trial_id)
            skipped.set_user_attr(
                "skipped",
                f"estimated epoch {estimate:.0f} s (cost table {table:.0f} s x {speed:.2f}, this "
                f"machine's measured speed) > budget share {self.max_epoch_s:.0f} s",
            )
            self._ot_study.tell(skipped, state=TrialState.FAIL)  # FAIL: left out of TPE's model (docstring)
            config = super().suggest(trial_id)
        if config is not None:  # its epochs will say how fast this machine is
            self._table_s[trial_id] = (config["model"], estimate_epoch_s(config))
        return config

    def _record_epoch_s(self, trial_id: str, result: dict | None) -> None:
        seconds, step = (result or {}).get(EPOCH_SECONDS), (result or {}).get("training_iteration")
        if trial_id in self._table_s and seconds is not None and step is not None:  # a result seen twice counts once
            self._epoch_s.setdefault(trial_id, {})[int(step)] = float(seconds)

    def _record_loss(self, trial_id: str, result: dict | None) -> dict[int, float]:
        """Keep the trial's validation loss per epoch in the study (a user attribute), for the ranking rule."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return {}
        losses = {int(k): float(v) for k, v in (ot_trial.user_attrs.get(LOSSES_ATTR) or {}).items()}
        step, loss = (result or {}).get("training_iteration"), (result or {}).get(TIE_LOSS)
        if step is not None and loss is not None and int(step) not in losses:
            losses[int(step)] = float(loss)
            ot_trial.set_user_attr(LOSSES_ATTR, {str(k): v for k, v in sorted(losses.items())})
        return losses

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)  # a finished trial's result: Ray warns and records nothing
        self._record_epoch_s(trial_id, result)
        if trial_id in self._completed_trials:  # Optuna refuses to change a finished trial (its study is the record)
            return
        if self.metric != TIE_LOSS and not isinstance(self.metric, list):
            self._record_loss(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._record_epoch_s(trial_id, result)
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
        losses = self._record_loss(trial_id, result) if self.metric != TIE_LOSS else None
        state, value = trial_outcome(values, self.max_epochs, self.mode, error, losses)
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
