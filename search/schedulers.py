"""Fair rungs with a progressive top rung: the search's own Ray Tune scheduler (``--scheduler fair``).

Asynchronous ASHA promotes the first trial to reach a rung, because it has no peers to lose against. The seed recipes
are queued first, so they reach every rung alone and run to the end while the search's own proposals meet full rungs
and stop after one epoch (issue 14). Here a trial goes past a rung only when it beats the cut among at least
``min_peers`` results recorded at that rung (the top ``1 / reduction_factor``, ASHA's rule); until the rung has
that many it is PAUSED (Tune checkpoints it and gives its worker to a new trial) and it is resumed from its
checkpoint as soon as the rung decides for it. Recipes get no exception: they are baselines, so each one is scored at
the first rung like everyone else, and goes further only by winning there.

A worker never idles because of a pause: when no new trial is waiting (the searcher is done, ``num_samples`` is
reached or the concurrency limit holds proposals back) and a worker is free, the paused trial that stands best in
its rung is resumed.

The top rung is progressive (PASHA, Bohdal et al. 2023): it starts at the second rung (``grace_period x
reduction_factor``, 4 epochs by default) and moves one rung up (x ``reduction_factor``, at most ``max_t``) only when the
ranking of the trials that reached it changed between the two highest rungs, so a short search spreads its epochs
over many configs and a long one spends them on the best. Rankings are soft: two trials swap only when they differ by
more than ``epsilon`` at both rungs. ``epsilon`` (unless given) is the metric's noise, estimated as the median
absolute change of a trial's value from one epoch to the next. Trials at the top rung wait there (paused) for it to
grow, or for a free worker.

Rungs count epochs by default. With ``unit_s`` they count seconds of a trial's own training instead (rung ``k`` at
``k x unit_s``, reached at the epoch whose end is nearest), so trials are compared after equal compute, not equal
epochs: on a CPU one epoch costs 1.5 s for a small CNN and 30 s for a ResNet, and a small CNN still at chance after
its first epoch is the best model after its twelfth (issue 14). ``max_t`` stays in epochs: a trial that finishes
before a rung's time counts at that rung (and every rung above) with its final value, as Hyperband counts a finished
trial.

Tune saves no scheduler state: on ``--resume`` the rungs are rebuilt from the results the trials had reported
(:func:`replay_reported`), here and in :class:`ResumableASHA`, the default scheduler. :class:`FairRungs` holds the
decisions and knows nothing about Ray, so the replay benchmark (``benchmarks/search_quality.py --replay``) runs the
very same logic; :class:`FairRungScheduler` is its Ray Tune face.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from runstore.metrics import EPOCH_SECONDS
from runstore.trials import last_start, parse_result_lines

__all__ = [
    "CONTINUE",
    "PAUSE",
    "STOP",
    "FairRungScheduler",
    "FairRungs",
    "ResumableASHA",
    "replay_reported",
    "rung_levels",
]

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP

log = logging.getLogger(__name__)


def rung_levels(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs where trials are compared: ``grace_period x reduction_factor^k`` below ``max_t``, then ``max_t``."""
    if grace_period < 1 or reduction_factor < 2 or max_t < 1:
        raise ValueError(
            f"rungs need grace_period >= 1, reduction_factor >= 2, max_t >= 1; got {grace_period}, "
            f"{reduction_factor}, {max_t}"
        )
    levels, t = [], grace_period
    while t < max_t:
        levels.append(t)
        t *= reduction_factor
    return levels + [max_t]


@dataclass
class FairRungs:
    """The rung decisions for values where larger is better (negate a minimised metric before calling in).

    ``on_result(trial, epoch, value)`` returns CONTINUE, PAUSE or STOP for the trial that reported; decisions it takes
    for *paused* trials at the same time (their rung filled up, or the top rung grew) are kept: ``promoted`` (resume
    these first) and ``rejected`` (stop these); ``forget(trial)`` once it is done with.
    """

    grace_period: int
    reduction_factor: int
    max_t: int
    min_peers: int | None = None  # default: reduction_factor
    epsilon: float | None = None  # default: estimated from the values (see the module docstring)
    start_max_t: int | None = None  # default: the second rung
    unit_s: float | None = None  # None: rungs in epochs; else in seconds of the trial's own training
    levels: list[int] = field(init=False)
    top: int = field(init=False)  # the current top rung (PASHA's growing max_t)
    results: dict[int, dict[str, float]] = field(init=False, default_factory=dict)  # rung -> trial -> value
    paused: dict[str, int] = field(init=False, default_factory=dict)  # trial -> the rung it waits at
    promoted: set[str] = field(init=False, default_factory=set)  # paused trials their rung let through
    rejected: set[str] = field(init=False, default_factory=set)  # paused trials their rung stopped
    growths: list[int] = field(init=False, default_factory=list)  # each new top rung, in order
    finishing: set[str] = field(init=False, default_factory=set)  # trials sent to max_t before the deadline
    won: set[str] = field(init=False, default_factory=set)  # trials that passed a rung below the top among peers
    _seconds: dict[str, list[float]] = field(init=False, default_factory=dict)  # trial -> its epochs' seconds
    _epoch: dict[str, int] = field(init=False, default_factory=dict)  # trial -> its last reported epoch
    _spent: dict[str, float] = field(init=False, default_factory=dict)  # trial -> seconds trained (unit_s rungs)
    _reached: dict[str, int] = field(init=False, default_factory=dict)  # trial -> the highest rung it reported at
    _last: dict[str, float] = field(init=False, default_factory=dict)
    _steps: list[float] = field(init=False, default_factory=list)  # |value change| between consecutive epochs

    def __post_init__(self) -> None:
        self.levels = rung_levels(self.grace_period, self.reduction_factor, self.max_t)
        if self.min_peers is None:
            self.min_peers = self.reduction_factor
        if self.min_peers < 1:
            raise ValueError(f"min_peers must be >= 1, got {self.min_peers}")
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise ValueError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        if self.unit_s is not None and not (math.isfinite(self.unit_s) and self.unit_s > 0):
            raise ValueError(f"unit_s must be a finite number of seconds > 0, got {self.unit_s}")
        start = self.start_max_t if self.start_max_t is not None else self.levels[min(1, len(self.levels) - 1)]
        if start not in self.levels:
            raise ValueError(f"start_max_t must be one of the rungs {self.levels}, got {start}")
        self.top = start

    # -- what the scheduler asks --------------------------------------------------------------------------------

    def on_result(self, trial: str, epoch: int, value: float, seconds: float | None = None) -> str:
        """Record ``trial``'s ``value`` after ``epoch`` (which took ``seconds``) and decide: CONTINUE, PAUSE (wait at
        a rung) or STOP."""
        timed = seconds is not None and math.isfinite(seconds) and seconds > 0
        if timed:
            self._seconds.setdefault(trial, []).append(seconds)
        if trial in self._last and math.isfinite(value) and math.isfinite(self._last[trial]):
            self._steps.append(abs(value - self._last[trial]))
        self._last[trial] = value
        self._epoch[trial] = epoch
        self.paused.pop(trial, None)
        self.promoted.discard(trial)
        crossed = self._crossed(trial, epoch, seconds if timed else None)
        if not crossed:
            return STOP if epoch >= self.max_t else CONTINUE
        for level in crossed:
            self.results.setdefault(level, {})[trial] = value
        rung = self._reached[trial] = crossed[-1]
        if epoch >= self.max_t:
            if len(crossed) > 1:  # finished before the rungs' times: it is a peer at each of them now
                if self.top in crossed:
                    self._maybe_grow()
                self._settle()
            return STOP
        if trial in self.finishing:
            if self.top in crossed:
                self._maybe_grow()
            self._settle(rung)
            return CONTINUE
        if self.top in crossed:
            self._maybe_grow()
        decision = self._decide(trial, rung)
        below = [level for level in crossed[:-1] if level < self.top and self._cut(level) is not None]
        if decision == CONTINUE or any(value >= self._cut(level) for level in below):
            self.won.add(trial)  # a long epoch that passed a lower rung is judged at the highest; it won the lower
        self._settle(rung)
        if decision == PAUSE:
            self.paused[trial] = rung
        return decision

    def _crossed(self, trial: str, epoch: int, seconds: float | None) -> list[int]:
        """The rungs ``trial`` reaches with this epoch, lowest first: the epoch itself if it is a rung; with
        ``unit_s``, every rung below ``max_t`` whose time this epoch's end is the nearest epoch end to (or all the
        rungs left once it finishes). An epoch without its seconds counts as reaching the rungs at or below it."""
        if self.unit_s is None:
            return [epoch] if epoch in self.levels else []
        spent = self._spent[trial] = self._spent.get(trial, 0.0) + (seconds or 0.0)
        ahead = [level for level in self.levels if level > self._reached.get(trial, 0)]
        if epoch >= self.max_t:
            return ahead
        if seconds is None:
            return [level for level in ahead if level <= epoch and level < self.max_t]
        return [level for level in ahead if level < self.max_t and spent >= level * self.unit_s - seconds / 2]

    def forget(self, trial: str) -> None:
        """``trial`` ended (stopped, finished, failed): it waits for nothing any more."""
        self.paused.pop(trial, None)
        self.promoted.discard(trial)
        self.rejected.discard(trial)
        self.finishing.discard(trial)

    def to_finish(self, remaining_s: float) -> str | None:
        """The paused trial to train to ``max_t`` now, so that it gets there before the deadline ``remaining_s``
        seconds away, or None.

        Only a trial that won a rung below the top among enough peers and waits at the top for it to grow can lead
        (one paused for want of peers has won nothing yet, nor has one whose long first epoch took it past the lower
        rungs straight to the top); of those, the best at the highest rung. It is sent on (to ``max_t``, no more
        rungs) once the time left is no more than what its remaining epochs need, at its median epoch time, plus one
        epoch: a short search then ends with its best trial trained to the end instead of exploring until the budget
        cuts everything. A leader that could not get within one epoch of ``max_t`` in the time left is passed over
        for the next (on a slow machine a resnet18 needs more than the whole budget: sent, it would take a worker
        to the end and still be cut). Once one is sent, the next leader is considered at the next free worker.
        """
        waiting = [
            t
            for t, rung in self.paused.items()
            if rung >= self.top and t in self.won and t not in self.rejected | self.finishing
        ]
        for leader in sorted(
            waiting, key=lambda t: (self.paused[t], self.results[self.paused[t]].get(t, -math.inf)), reverse=True
        ):
            seconds = self._seconds.get(leader)
            if not seconds:
                return None
            epoch_s = statistics.median(seconds)
            need = (self.max_t - self._epoch.get(leader, self.paused[leader])) * epoch_s
            if need > remaining_s + epoch_s:
                continue  # cannot get there any more: the next leader may
            if remaining_s > need + epoch_s:
                return None  # not yet
            self.finishing.add(leader)
            return leader
        return None

    def standing(self, trial: str) -> float:
        """How well a paused trial stands in the rung it waits at: the share of that rung's other results it beats
        (ties count half). Used to resume the best first."""
        rung = self.paused.get(trial)
        if rung is None:
            return 0.0
        values = self.results.get(rung, {})
        mine = values.get(trial, -math.inf)
        others = [v for t, v in values.items() if t != trial]
        if not others:
            return 1.0
        return sum(1.0 if mine > v else 0.5 if mine == v else 0.0 for v in others) / len(others)

    def noise(self) -> float:
        """``epsilon``: as given, else the median absolute epoch-to-epoch change of the values seen so far."""
        if self.epsilon is not None:
            return self.epsilon
        return statistics.median(self._steps) if self._steps else 0.0

    # -- the rules ----------------------------------------------------------------------------------------------

    def _cut(self, rung: int) -> float | None:
        """The value a trial must reach at ``rung`` to go on (ASHA's top ``1 / reduction_factor``), or None while the
        rung has fewer than ``min_peers`` results."""
        values = sorted(self.results.get(rung, {}).values(), reverse=True)
        if len(values) < self.min_peers:
            return None
        keep = max(1, len(values) // self.reduction_factor)
        return values[keep - 1]

    def _decide(self, trial: str, rung: int) -> str:
        if rung >= self.top:
            return PAUSE  # at (or above) the top rung: wait for it to grow
        cut = self._cut(rung)
        if cut is None:
            return PAUSE  # too few peers yet: wait for a fair comparison
        return CONTINUE if self.results[rung][trial] >= cut else STOP

    def _settle(self, rung: int | None = None) -> None:
        """Decide for the paused trials whose rung can now decide (all rungs when ``rung`` is None)."""
        for trial, at in list(self.paused.items()):
            if (rung is not None and at != rung) or trial in self.promoted:
                continue
            decision = self._decide(trial, at)
            if decision == CONTINUE:
                self.promoted.add(trial)
                self.won.add(trial)
            elif decision == STOP:
                del self.paused[trial]
                self.rejected.add(trial)

    def _maybe_grow(self) -> None:
        """PASHA: move the top rung up one level if the ranking at it disagrees with the ranking one rung below."""
        index = self.levels.index(self.top)
        if index == 0 or self.top >= self.max_t:
            return
        upper, lower = self.results.get(self.top, {}), self.results.get(self.levels[index - 1], {})
        both = [t for t in upper if t in lower]
        eps = self.noise()
        swapped = any(
            (upper[a] - upper[b] > eps and lower[b] - lower[a] > eps)
            or (upper[b] - upper[a] > eps and lower[a] - lower[b] > eps)
            for i, a in enumerate(both)
            for b in both[i + 1 :]
        )
        if swapped:
            self.top = self.levels[index + 1]
            self.growths.append(self.top)
            self._settle()


class FairRungScheduler(FIFOScheduler):
    """Ray Tune's face of :class:`FairRungs`: decisions on ``metric`` at epochs ``time_attr``; paused trials resumed
    when their rung lets them through (first) or when a worker would otherwise idle (best standing first).

    ``max_concurrent`` is how many trials run at once (the workers); it tells an idle worker from a busy one.
    """

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        grace_period: int,
        reduction_factor: int,
        max_t: int,
        max_concurrent: int,
        min_peers: int | None = None,
        epsilon: float | None = None,
        time_budget_s: float | None = None,
        time_attr: str = "training_iteration",
        unit_s: float | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self._metric = metric
        self._sign = 1.0 if mode == "max" else -1.0
        self._time_attr = time_attr
        self._max_concurrent = max_concurrent
        self._time_budget_s = time_budget_s or None
        self._deadline: float | None = None  # set when Tune first asks for a trial, as its own budget clock starts
        self.rungs = FairRungs(
            grace_period, reduction_factor, max_t, min_peers=min_peers, epsilon=epsilon, unit_s=unit_s
        )
        self._caught_up = False

    # Every epoch must reach the rungs one by one: a buffered result would skip a rung.
    _supports_buffered_results = False

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._catch_up(tune_controller)
        decision = self._record(trial.trial_id, result)
        self._stop_rejected(tune_controller)
        return decision if decision is not None else CONTINUE

    def _record(self, trial_id: str, result: dict) -> str | None:
        """Hand one reported epoch to the rungs; None if it carries no rung metric."""
        if self._time_attr not in result or self._metric not in result:
            return None
        value = self._sign * float(result[self._metric])
        # The epoch's own train + validate time (a resumed trial's catch-up reports carry the original one); Tune's
        # time between reports when the trainable does not measure it.
        seconds = result.get(EPOCH_SECONDS, result.get("time_this_iter_s"))
        return self.rungs.on_result(
            trial_id, int(result[self._time_attr]), value, None if seconds is None else float(seconds)
        )

    def _catch_up(self, tune_controller: Any) -> None:
        """Once, at the first call: rebuild the rungs from the results the trials already reported
        (:func:`replay_reported`); a trial that has ended waits for nothing. A new run has no results yet and this
        does nothing."""
        if self._caught_up:
            return
        self._caught_up = True
        replayed = replay_reported(tune_controller, self._time_attr, lambda t, row: self._record(t.trial_id, row))
        if not replayed[0]:
            return
        for trial in tune_controller.get_trials():
            if trial.status in (Trial.TERMINATED, Trial.ERROR):
                self.rungs.forget(trial.trial_id)
        log.info(
            "fair rungs rebuilt from %d results of %d trials: %s",
            *replayed,
            {level: len(v) for level, v in sorted(self.rungs.results.items())},
        )

    def _waiting(self, trial: Trial) -> bool:
        """Paused at a rung: PAUSED, or PENDING while the rungs hold it (Tune restores a paused trial as PENDING)."""
        held = trial.trial_id in self.rungs.paused or trial.trial_id in self.rungs.rejected
        return trial.status == Trial.PAUSED or (trial.status == Trial.PENDING and held)

    def _stop_rejected(self, tune_controller: Any) -> None:
        """Stop the paused trials a rung decided against. A trial whose pause is still being saved is not PAUSED
        yet: it stays rejected and is stopped at a later call, once it is."""
        for trial in tune_controller.get_trials():
            if trial.trial_id in self.rungs.rejected and self._waiting(trial):
                tune_controller.stop_trial(trial)
                # Ray 2.60 saves a stopped trial's new status only if it was running: without this, the run's saved
                # state keeps it PAUSED and --resume would train it again.
                mark = getattr(tune_controller, "_mark_trial_to_checkpoint", None)
                if mark is not None:
                    mark(trial)
                self.rungs.forget(trial.trial_id)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.rungs.forget(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.rungs.forget(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.rungs.forget(trial.trial_id)

    def choose_trial_to_run(self, tune_controller: Any, now: float | None = None) -> Trial | None:
        """A promoted paused trial first; then, with a time budget, the leader the deadline says must be trained to
        the end now (:meth:`FairRungs.to_finish`); then a new (PENDING) trial; then, only when a worker is free, the
        paused trial with the best standing in its rung. ``now`` (``time.monotonic()`` by default) is for tests."""
        self._catch_up(tune_controller)
        self._stop_rejected(tune_controller)
        now = time.monotonic() if now is None else now
        if self._time_budget_s is not None and self._deadline is None:
            self._deadline = now + self._time_budget_s
        trials = tune_controller.get_trials()
        paused = [t for t in trials if self._waiting(t) and t.trial_id not in self.rungs.rejected]
        promoted = [t for t in paused if t.trial_id in self.rungs.promoted]
        if promoted:
            return max(promoted, key=lambda t: self.rungs.standing(t.trial_id))
        if self._deadline is not None and paused:
            ids = {t.trial_id: t for t in paused}
            finish = self.rungs.to_finish(self._deadline - now)
            if finish in ids:
                return ids[finish]
            if finish is not None:
                self.rungs.finishing.discard(finish)  # not resumable yet (its pause is still being saved)
        for t in trials:
            if t.status == Trial.PENDING and not self._waiting(t):
                return t
        busy = sum(t.status in (Trial.RUNNING, Trial.PENDING) and not self._waiting(t) for t in trials)
        if paused and busy < self._max_concurrent:
            return max(paused, key=lambda t: self.rungs.standing(t.trial_id))
        return None

    def debug_string(self) -> str:
        return (
            f"Fair rungs {self.rungs.levels} (top now {self.rungs.top}), at least {self.rungs.min_peers} results a "
            f"rung, {len(self.rungs.paused)} trials paused."
        )


class ResumableASHA(ASHAScheduler):
    """Ray Tune's ASHA (``--scheduler asha``, the default) whose rungs survive ``--resume``.

    Tune saves no scheduler state, so a resumed run gets an ASHA with empty rungs beside trials that already
    reached them: the next result at each rung then has no peers to lose against and goes on, whatever the earlier
    trials scored there. At the first result after a resume the rungs are rebuilt from what the trials had reported
    (:func:`replay_reported`), so every decision from there is the one the uninterrupted run would have taken. The
    decisions themselves are Ray's, unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._caught_up = False

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._catch_up(tune_controller)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._catch_up(tune_controller)
        super().on_trial_complete(tune_controller, trial, result)

    def _record(self, trial: Trial, result: dict) -> None:
        """Put one earlier epoch in the trial's bracket, as ASHA recorded it when it was reported."""
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None or self._time_attr not in result or self._metric not in result:
            return
        bracket.on_result(trial, result[self._time_attr], self._metric_op * float(result[self._metric]))

    def _catch_up(self, tune_controller: Any) -> None:
        # None: called as Ray's own ASHA tests call it, with no controller and so no earlier trials to read.
        if self._caught_up or tune_controller is None:
            return
        self._caught_up = True
        replayed = replay_reported(tune_controller, self._time_attr, self._record)
        if replayed[0]:
            rungs = {milestone: len(recorded) for b in self._brackets for milestone, recorded in reversed(b._rungs)}
            log.info("asha rungs rebuilt from %d results of %d trials: %s", *replayed, rungs)


def replay_reported(tune_controller: Any, time_attr: str, record: Any) -> tuple[int, int]:
    """Hand every result the trials reported before this driver started to ``record(trial, result)``, in the
    order they were reported; returns (results, trials that had any).

    Tune saves no scheduler state: a run continued with ``--resume`` gets its scheduler as it was built, with empty
    rungs, beside trials that already reached them. Each trial's ``result.json`` (from its last start) is replayed
    by timestamp, then the trials' creation order, then epoch, so the rungs and the decisions already taken are as
    they were. A new run has no results yet and this records nothing.
    """
    trials = tune_controller.get_trials()
    reported = []
    for order, trial in enumerate(trials):
        for row in _reported_results(trial):
            reported.append((float(row.get("timestamp", 0) or 0), order, int(row.get(time_attr, 0)), row))
    for _, order, _, row in sorted(reported, key=lambda r: r[:3]):
        record(trials[order], row)
    return len(reported), len({r[1] for r in reported})


def _reported_results(trial: Trial) -> list[dict[str, Any]]:
    """The epochs ``trial`` reported before this driver started (its ``result.json`` on the run's storage, local or
    remote), from its last start; none for a new trial or a file that cannot be read."""
    storage = getattr(trial, "storage", None)
    if storage is None or not trial.has_reported_at_least_once:  # a new trial (it has no folder yet either)
        return []
    path = f"{storage.trial_fs_path}/result.json"
    try:
        with storage.storage_filesystem.open_input_stream(path) as f:
            text = f.read().decode("utf-8", errors="replace")
    except (OSError, ValueError) as exc:
        log.warning("trial %s: its results could not be read from %s (%s); its rungs start empty", trial, path, exc)
        return []
    return last_start(parse_result_lines(text))
