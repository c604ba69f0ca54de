"""The console of a search: a few lines and one live status line; Ray's and the driver's full output go to a log.

Without ``-v`` the process's stdout and stderr (file descriptors 1 and 2, so Ray's own processes and its forwarded
trial logs too) are redirected to ``RUN/search.log`` for the length of the search, and the user-facing lines go to
the console the search was started from: refreshed in place on a terminal, printed at most every 30 s otherwise.
With ``-v`` nothing is redirected (Ray Tune's full console output) and the driver's log is also written to the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

__all__ = ["LOG_FILE", "Console", "Progress", "ProgressCallback", "console_for", "current_console"]

LOG_FILE = "search.log"

#: Seconds between status lines when the console is not a terminal (piped to a file, a CI log).
PIPED_INTERVAL_S = 30.0
#: Seconds between refreshes of the in-place status line on a terminal.
LIVE_INTERVAL_S = 1.0


class Console:
    """Where the user-facing lines go. ``live``: a terminal, where the status line is redrawn in place."""

    def __init__(self, stream: TextIO, *, live: bool, verbose: bool = False) -> None:
        self.stream = stream
        self.live = live
        self.verbose = verbose
        self._status_shown = False
        self._last_status = time.monotonic()

    def line(self, text: str = "") -> None:
        """A line of its own (after the status line, if one is showing)."""
        self._end_status()
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str, force: bool = False) -> None:
        """The status line: redrawn in place on a terminal, else printed when due (or ``force``)."""
        if self.verbose:
            return  # Ray Tune's own progress tables are on the console
        now = time.monotonic()
        interval = LIVE_INTERVAL_S if self.live else PIPED_INTERVAL_S
        if not force and now - self._last_status < interval:
            return
        self._last_status = now
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")
            self._status_shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _end_status(self) -> None:
        if self._status_shown:
            self.stream.write("\n")
            self._status_shown = False


_CURRENT: Console | None = None


def current_console() -> Console | None:
    """The console of the search running in this process (``None`` outside one)."""
    return _CURRENT


@contextmanager
def console_for(log_path: Path, verbose: bool = False) -> Iterator[Console]:
    """The console for one search whose full output goes to ``log_path`` (see the module docstring)."""
    global _CURRENT
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path) if verbose else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%X"))
        logging.getLogger().addHandler(handler)
        console = Console(sys.stdout, live=False, verbose=True)
        saved: tuple[int, int] | None = None
    else:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        console = Console(os.fdopen(os.dup(saved[0]), "w", buffering=1), live=os.isatty(saved[0]))
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    _CURRENT = console
    try:
        yield console
    finally:
        _CURRENT = None
        console._end_status()
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if saved is not None:
            # The log may sit on the disk that just filled up: what cannot be written there is dropped, not raised.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            console.stream.close()


@dataclass(frozen=True)
class Progress:
    """Where a search stands: trials done (of ``total``; None: no limit but the time budget) and running, epochs
    trained, the best score so far and whose."""

    total: int | None
    done: int
    running: int
    epochs: int
    metric: str
    best: float | None
    best_trial: str

    @classmethod
    def of(cls, trials: Sequence[Any], total: int | None, metric: str, mode: str) -> Progress:
        """Read off Tune's trials (``status``, ``last_result``, ``metric_analysis``, ``config``)."""
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        epochs = sum(int((t.last_result or {}).get("training_iteration", 0) or 0) for t in trials)
        best, best_trial = None, ""
        for t in trials:
            value = (t.metric_analysis.get(metric) or {}).get(mode)
            if value is not None and (best is None or (value > best if mode == "max" else value < best)):
                recipe = (t.config or {}).get("recipe") or ""
                best, best_trial = float(value), f"{t.trial_id}{' ' + recipe if recipe else ''}"
        return cls(None if total is None else max(total, len(trials)), done, running, epochs, metric, best, best_trial)

    def line(self, elapsed_s: float, budget_s: float | None) -> str:
        clock = _duration(elapsed_s) + (f", {_duration(max(budget_s - elapsed_s, 0))} left" if budget_s else "")
        best = f"best {self.metric} {self.best:.4f} ({self.best_trial})" if self.best is not None else "no result yet"
        done = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        return f"[{clock}] trials {done} done, {self.running} running, {self.epochs} epochs | {best}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class ProgressCallback(Callback):
    """A Tune callback that shows :class:`Progress` on the current console; plain data, so Tune can pickle it."""

    def __init__(self, total: int | None, metric: str, mode: str, budget_s: float | None) -> None:
        self.total = total
        self.metric = metric
        self.mode = mode
        self.budget_s = budget_s
        self._start = time.monotonic()

    def setup(self, **info: Any) -> None:
        self._start = time.monotonic()

    def _show(self, trials: Sequence[Any], force: bool) -> None:
        console = current_console()
        if console is not None:
            progress = Progress.of(trials, self.total, self.metric, self.mode)
            console.status(progress.line(time.monotonic() - self._start, self.budget_s), force=force)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._show(trials, force=False)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._show(trials, force=True)
