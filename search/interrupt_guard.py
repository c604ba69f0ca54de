"""A Tune callback that lets Ctrl+C (or SIGTERM) stop a run only between a trial's epochs, never inside one's record.

Tune takes a trial's epoch in two steps of its loop: the result (the row in ``result.json``, what the scheduler and the
searcher see), then, a step later, the checkpoint the trial wrote with it. Stopped in between, Tune's saved state pairs
that epoch's result with the checkpoint before it, and ``--resume`` would train the epoch again. ``search.tuner``
puts this callback in every search and study.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from ray.tune import Callback

__all__ = ["EpochSafeInterrupt"]

log = logging.getLogger("search.run")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class EpochSafeInterrupt(Callback):
    """Holds Ctrl+C (and SIGTERM, which ``search.driver.fit_interrupted`` turns into it) until no trial is between
    a recorded epoch and that epoch's checkpoint, then passes it on to Tune's handler, which stops the run and saves
    its state. It is passed on at the end of the first loop step with no trial's checkpoint pending (almost always the
    step it came in); a second Ctrl+C, or ``MAX_HOLD_S``, passes it on at once.
    """

    #: Longest hold: a checkpoint is taken in a step or two, so only a stuck trial could keep the search this long.
    MAX_HOLD_S = 30.0

    def __init__(self) -> None:
        self._tune_handler: Any = None
        self._held_since: float | None = None
        self._passed_on = False

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its callbacks into the run; a resumed search starts with nothing held

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # Tune installs its SIGINT handler when fit() starts, after the callbacks are built: take its place here.
        if self._tune_handler is not None or self._passed_on or not _in_main_thread():
            return
        self._tune_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._hold)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self._held_since is None:
            return
        pending = [t for t in trials if t.is_saving]
        if pending and time.monotonic() - self._held_since < self.MAX_HOLD_S:
            return
        self._pass_on(signal.SIGINT, None)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # Every trial ended while a signal was held: it still stops the run (the resume finishes it). Otherwise Tune's
        # handler goes back, so a Ctrl+C after fit() is not held by a loop that no longer runs.
        if self._held_since is not None:
            self._pass_on(signal.SIGINT, None)
        elif self._tune_handler is not None and not self._passed_on and _in_main_thread():
            signal.signal(signal.SIGINT, self._tune_handler)

    def _hold(self, signum: int, frame: Any) -> None:
        if self._held_since is not None:  # a second Ctrl+C: stop now
            self._pass_on(signum, frame)
            return
        self._held_since = time.monotonic()
        log.warning("stopping once the running trials' last checkpoints are recorded (Ctrl+C again: stop now)")

    def _pass_on(self, signum: int, frame: Any) -> None:
        handler, self._held_since, self._passed_on = self._tune_handler, None, True
        # Tune's handler sets its stop event and puts back the handler it found (fit_interrupted's sentinel).
        signal.signal(signal.SIGINT, handler if callable(handler) else signal.default_int_handler)
        if callable(handler):
            handler(signum, frame)
