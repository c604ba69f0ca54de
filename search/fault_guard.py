"""A Tune callback that stops the search at the first trial that failed because its storage took no more writes.

With a storage URI Tune does not stop by itself when a trial cannot upload its checkpoint: it retries the trial, ends
it as ERROR and goes on, while its own state (which ``--resume`` reads) can no longer be saved. The guard reads the
failed trial's error file (kept on the driver) and, on a storage fault met while uploading a checkpoint
(:func:`search.faults.storage_failure`), stops the run as Ctrl+C does; ``search.run`` or ``search.study`` then ends
with one line (:class:`search.faults.StorageFault`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search.faults import storage_failure

__all__ = ["StorageGuard", "reset", "stopped_by_storage"]

# What the guard saw in this process. A module value rather than an attribute: Tune pickles its callbacks into the run
# folder and a resumed search runs the unpickled copy, so the driver would not hold the instance that saw the fault.
_REASONS: list[str] = []

#: Ray's function that copies a trial's checkpoint to the storage: in the trace of every failed upload.
_UPLOAD = "persist_current_checkpoint"


def reset() -> None:
    """Forget a fault seen by an earlier search in this process."""
    _REASONS.clear()


def stopped_by_storage() -> str | None:
    """The reason the guard stopped the search (e.g. "Permission denied"), or None."""
    return _REASONS[0] if _REASONS else None


class StorageGuard(Callback):
    """Stops the search (SIGINT to the driver, which Tune handles) at the first trial failed by a storage fault."""

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._check(trial)

    def _check(self, trial: Any) -> None:
        if _REASONS or not trial.error_file or not Path(trial.error_file).is_file():
            return
        text = Path(trial.error_file).read_text(errors="replace")
        # Only a failed checkpoint upload counts: a trial's own "Permission denied" (say, on a file it opened) is its
        # error, not the storage's, and Tune deals with it as with any other.
        reason = storage_failure(RuntimeError(text[-20000:])) if _UPLOAD in text else None
        if reason is not None:
            _REASONS.append(reason)
            os.kill(os.getpid(), signal.SIGINT)
