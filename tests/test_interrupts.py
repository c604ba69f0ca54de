"""Ctrl+C and SIGTERM in a search or a study, with real signals to this process, no Ray: the guard that holds the
signal until no trial's checkpoint is pending (``search.interrupt_guard``; fed trials as Tune's loop would, its end to
end test is ``test_failures.py::test_ctrl_c_at_an_epoch_boundary_resumes_training_no_epoch_twice``), and the resume
hint after ``fit()`` until the run is marked finished (``search.driver.resumable_until_finished``).
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstore.layout import write_run_info
from search.driver import resumable_until_finished, run_or_interrupted
from search.interrupt_guard import EpochSafeInterrupt

HINT = "search interrupted; continue it with: python -m search.run --resume RUN"


class _Trial:
    """What the guard reads of a Tune trial: whether its checkpoint is pending."""

    def __init__(self, saving: bool) -> None:
        self.is_saving = saving


@pytest.fixture()
def tune_handler() -> Iterator[list[int]]:
    """A SIGINT handler that acts as Tune's does: records the signal and puts back the handler it found."""
    calls: list[int] = []
    found = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        calls.append(signum)
        signal.signal(signal.SIGINT, found)

    signal.signal(signal.SIGINT, handler)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGINT, found)


def test_ctrl_c_is_held_until_no_trial_has_a_checkpoint_pending(tune_handler: list[int]) -> None:
    guard = EpochSafeInterrupt()
    guard.on_step_begin(0, [])
    os.kill(os.getpid(), signal.SIGINT)
    assert tune_handler == []  # held: Tune does not stop yet
    guard.on_step_end(1, [_Trial(saving=False), _Trial(saving=True)])
    assert tune_handler == []  # one trial's checkpoint is still being taken in
    guard.on_step_end(2, [_Trial(saving=False), _Trial(saving=False)])
    assert tune_handler == [signal.SIGINT]
    guard.on_step_end(3, [_Trial(saving=False)])
    assert tune_handler == [signal.SIGINT]  # passed on once


def test_a_second_ctrl_c_stops_at_once(tune_handler: list[int]) -> None:
    guard = EpochSafeInterrupt()
    guard.on_step_begin(0, [])
    os.kill(os.getpid(), signal.SIGINT)
    assert tune_handler == []
    os.kill(os.getpid(), signal.SIGINT)
    assert tune_handler == [signal.SIGINT]


def test_a_held_ctrl_c_still_stops_a_run_whose_trials_all_ended(tune_handler: list[int]) -> None:
    guard = EpochSafeInterrupt()
    guard.on_step_begin(0, [])
    os.kill(os.getpid(), signal.SIGINT)
    guard.on_experiment_end([_Trial(saving=False)])
    assert tune_handler == [signal.SIGINT]


def test_after_a_run_without_ctrl_c_tunes_handler_is_back(tune_handler: list[int]) -> None:
    guard = EpochSafeInterrupt()
    tunes = signal.getsignal(signal.SIGINT)
    guard.on_step_begin(0, [])
    assert signal.getsignal(signal.SIGINT) != tunes
    # Tune pickles its callbacks into the run: a guard in use pickles to a fresh one.
    assert vars(pickle.loads(pickle.dumps(guard))) == vars(EpochSafeInterrupt())
    guard.on_experiment_end([])
    assert signal.getsignal(signal.SIGINT) is tunes and tune_handler == []


def _interrupted_after_fit(run_dir: Path, finished: bool, sig: signal.Signals) -> Path:
    """A run whose ``fit()`` has returned: ``sig`` comes before (or after) run.json is marked finished."""
    write_run_info(run_dir, {"name": "run", "finished": False})
    with resumable_until_finished(run_dir, HINT):
        if finished:
            write_run_info(run_dir, {"name": "run", "finished": True})
        os.kill(os.getpid(), sig)
    raise AssertionError(f"{sig.name} did not stop the run")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_after_fit_before_the_run_is_finished_gives_the_resume_hint(
    sig: signal.Signals, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous, term = signal.signal(signal.SIGINT, signal.default_int_handler), signal.getsignal(signal.SIGTERM)
    try:
        code = run_or_interrupted(lambda: _interrupted_after_fit(tmp_path, False, sig), "val_balanced_acc")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and capsys.readouterr().err.strip() == HINT
    assert signal.getsignal(signal.SIGTERM) == term  # SIGTERM's handler is put back after the block


def test_ctrl_c_once_the_run_is_marked_finished_is_a_plain_interrupt(tmp_path: Path) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _interrupted_after_fit(tmp_path, True, signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_every_search_and_study_run_has_the_guard_after_its_own_callbacks(tmp_path: Path) -> None:
    from search.tuner import run_config

    mine = EpochSafeInterrupt()
    callbacks = run_config("run", str(tmp_path), [mine]).callbacks
    assert callbacks[0] is mine and isinstance(callbacks[-1], EpochSafeInterrupt) and len(callbacks) == 2
    assert isinstance(run_config("run", str(tmp_path)).callbacks[-1], EpochSafeInterrupt)
