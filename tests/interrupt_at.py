"""Test-only: Ctrl+C (a real SIGINT to the search driver) at a chosen moment between two epochs of a trial.

An interrupt that lands at an epoch boundary meets one of two states that the resume tests must see for certain, not
by chance: ``CXR_INTERRUPT_AT=N:E:MOMENT`` sends SIGINT to the driver when the N-th trial (in creation order)

* ``result``:   has its epoch E result being recorded by Tune, before Tune has recorded that epoch's checkpoint (Tune
  takes a trial's result and its checkpoint in two steps);
* ``inflight``: has had epoch E recorded, checkpoint and all (E=0: has started), and has then trained epoch E+1 and
  written its checkpoint, which the driver has not taken in yet.

``tests/search_driver.py`` calls :func:`install` when the variable is set: it adds :class:`InterruptAt` to the Tune
callbacks of the search. Tune pickles its callbacks into the run, so a resumed search has the callback too; without
the variable (as a resume runs) it does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.train import CHECKPOINT_FILE, load_checkpoint_state

ENV = "CXR_INTERRUPT_AT"
MOMENTS = ("result", "inflight")

# Fire once per process: a module value, as the callback Tune runs may be an unpickled copy.
_FIRED: list[str] = []


def _target() -> tuple[int, int, str] | None:
    value = os.environ.get(ENV, "")
    if not value:
        return None
    number, epoch, moment = value.split(":")
    if moment not in MOMENTS:
        raise ValueError(f"{ENV}={value!r}: moment must be one of {', '.join(MOMENTS)}")
    return int(number), int(epoch), moment


def _interrupt(why: str) -> None:
    _FIRED.append(why)
    print(f"interrupt_at: SIGINT {why}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)


def _persisted_epoch(trial_dir: Path, epoch: int) -> bool:
    """Whether a checkpoint of ``epoch`` is written whole in ``trial_dir``."""
    for path in trial_dir.glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        try:
            if int(load_checkpoint_state(path.parent)["epoch"]) == epoch:
                return True
        except Exception:  # noqa: BLE001 - a file still being written
            continue
    return False


class InterruptAt(Callback):
    """Sends SIGINT to the driver at the moment ``CXR_INTERRUPT_AT`` names (see the module docstring)."""

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any):
        target = _target()
        if _FIRED or target is None or target[2] != "result":
            return
        number, epoch, _ = target
        if trials.index(trial) + 1 == number and int(result.get("epoch", 0)) == epoch:
            _interrupt(f"as trial {number} reports epoch {epoch}, before Tune records its checkpoint")

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        target = _target()
        if _FIRED or target is None or target[2] != "inflight":
            return
        number, epoch, _ = target
        if len(trials) < number:
            return
        trial = trials[number - 1]
        if trial.status != "RUNNING" or trial.is_saving or int(trial.last_result.get("epoch", 0)) != epoch:
            return
        if epoch and not trial.checkpoint:  # epoch E's checkpoint not yet recorded by Tune
            return
        # The driver holds here (it takes in no result) while the trial trains epoch E+1 and writes its checkpoint.
        deadline = time.monotonic() + 120
        while not _persisted_epoch(Path(trial.path), epoch + 1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"trial {number} wrote no checkpoint of epoch {epoch + 1} in 120 s")
            time.sleep(0.05)
        _interrupt(f"after trial {number} wrote its epoch {epoch + 1} checkpoint, before Tune takes in that result")


def install() -> None:
    """Add :class:`InterruptAt` to the callbacks of every Tune run this process builds."""
    import search.tuner

    build = search.tuner.run_config

    def run_config(name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:
        return build(name, storage_path, [*(callbacks or []), InterruptAt()])

    search.tuner.run_config = run_config
