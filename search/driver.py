"""What every command that runs trials on Ray Tune shares (``search.run``, ``search.study``).

Starting or joining Ray, where a run's files go (a directory, or a storage URI with a local mirror), running
``Tuner.fit`` so that Ctrl+C or SIGTERM leaves a resumable run and a storage that stops taking writes ends it with one
line, the checks ``--resume`` makes before it unpickles
anything, the failed trials in run.json, the report at the end and the exit code of a run where no trial scored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runstore.errors import UserError
from runstore.layout import load_run_info, write_run_info
from runstore.trials import load_trials, write_trials_csv
from runstore.trust import is_trusted, registry_path, trust_run
from search.faults import StorageFault, storage_failure, storage_fault
from search.storage import is_uri, pull_run_files, pull_trial_files, push_run_files, run_uri

__all__ = [
    "RunInterrupted",
    "RunPlace",
    "build_report_line",
    "check_cluster_resources",
    "check_resumable",
    "check_saved_settings",
    "exit_without_result",
    "fit_interrupted",
    "locate_resume",
    "mark_finished",
    "record_failed_trials",
    "report_and_push",
    "resumable_until_finished",
    "resume_settings",
    "run_or_interrupted",
    "run_place",
    "start_ray",
    "storage_faults_stop",
]

log = logging.getLogger("search.run")


class RunInterrupted(Exception):
    """The run stopped before every trial finished; it can be resumed (the message says how)."""


def start_ray(address: str | None, cpus: int | None = None) -> bool:
    """Start (or join) Ray unless this process already has; True if this call did."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": a fresh single-machine instance, even when a `ray start` cluster runs here (ray.init() would join
        # that one silently); joining a cluster is what --address is for.
        ray.init(
            address="local",
            num_cpus=cpus or len(os.sched_getaffinity(0)),
            include_dashboard=False,
            log_to_driver=True,
        )
    return True


def check_cluster_resources(address: str | None, cpus: float, gpus: float) -> None:
    """After Ray starts: refuse on a local run, warn on a cluster (its autoscaler may add nodes later)."""
    import ray

    have = ray.cluster_resources()
    short = [
        f"{need:g} {kind} per trial but the cluster has {have.get(key, 0):g}"
        for kind, key, need in (("CPU(s)", "CPU", cpus), ("GPU(s)", "GPU", gpus))
        if need > float(have.get(key, 0))
    ]
    if not short:
        return
    if not address:
        raise UserError(f"this machine cannot run a trial: {'; '.join(short)}")
    log.warning("%s: no trial can start until the cluster grows (an autoscaler may add nodes)", "; ".join(short))


@dataclasses.dataclass(frozen=True)
class RunPlace:
    """Where a run's files go: Tune's ``storage_path``, the storage ``uri`` of the run (None for a local directory)
    and ``run_dir``, the run directory here (the run itself, or the local mirror of a run kept at a URI)."""

    storage_path: str
    uri: str | None
    run_dir: Path


def run_place(storage: str, name: str, resume_dir: Path | None = None) -> RunPlace:
    """Where run ``name`` under ``storage`` goes; a new run may not land on an existing one."""
    # A URI (s3://, gs://, file://): Tune writes there directly, our files go to a local mirror and are copied up.
    remote = is_uri(storage)
    storage_path = storage if remote else str(Path(storage).expanduser().resolve())
    uri = run_uri(storage, name) if remote else None
    run_dir = resume_dir or (Path("runs").resolve() / name if remote else Path(storage_path) / name)
    if resume_dir is None and (run_dir / "run.json").exists():
        raise UserError(
            f"--name: {run_dir} already holds a run; continue it with --resume {run_dir} or pick a new name"
        )
    return RunPlace(storage_path, uri, run_dir)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _sigint_sentinel(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def fit_interrupted(tuner: Any, where: str | Path, command: str, what: str) -> tuple[bool, Any]:
    """Run ``tuner.fit()``; return (True if Ctrl+C or SIGTERM stopped it, the ``ResultGrid``). If the Tuner's
    :class:`search.fault_guard.StorageGuard` stopped it instead, raise the one-line :class:`StorageFault` for
    ``where`` (:func:`search.faults.storage_fault`): the run is not finished and waits for storage that takes writes.

    Tune catches SIGINT itself, saves the experiment and returns normally, marking the trials it stopped as
    terminated. Its handler puts back the handler it found, and only when it fires; so a sentinel installed
    before ``fit`` and found again after it means the run was interrupted. (Inside ``fit``, the Tune callback
    :class:`search.interrupt_guard.EpochSafeInterrupt` passes the signal on to Tune's handler only between epochs.)
    """
    from search import fault_guard

    fault_guard.reset()
    interrupted, grid = _fit(tuner)
    reason = fault_guard.stopped_by_storage()
    if reason is not None:
        raise storage_fault(where, reason, command, what)
    return interrupted, grid


def _fit(tuner: Any) -> tuple[bool, Any]:
    if not _in_main_thread():
        return False, tuner.fit()
    signal.signal(signal.SIGINT, _sigint_sentinel)
    # SIGTERM (a spot node's notice, `kill`, a scheduler's stop) stops the run as Ctrl+C does: Tune handles SIGINT.
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        grid = tuner.fit()
        return signal.getsignal(signal.SIGINT) is _sigint_sentinel, grid
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous_term)


@contextlib.contextmanager
def resumable_until_finished(run_dir: Path, hint: str) -> Iterator[None]:
    """Ctrl+C or SIGTERM inside the block ends the run as :class:`RunInterrupted` with ``hint`` (how to resume) as
    long as run.json is not marked finished: after ``fit()`` returns, the run is still unfinished (``--resume`` ends
    it) until :func:`mark_finished`. Once it is marked, a Ctrl+C is plain ``KeyboardInterrupt`` ("interrupted")."""
    previous_term = None
    if _in_main_thread():
        previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    except KeyboardInterrupt:
        if load_run_info(run_dir).get("finished") is True:
            raise
        raise RunInterrupted(hint) from None
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


@contextlib.contextmanager
def storage_faults_stop(where: str | Path, command: str, what: str) -> Iterator[None]:
    """An error inside the block that is a storage fault (disk full, a file size limit, a folder made read-only:
    :func:`search.faults.storage_failure`) ends the run as :class:`StorageFault`, one line naming ``where`` and how
    to resume it with ``python -m COMMAND --resume``; the error itself goes to the log. Other errors pass through."""
    try:
        yield
    except (RunInterrupted, UserError, StorageFault):
        raise
    except Exception as exc:
        # Tune stops with whatever error it met first, raised in the driver or quoted from a trial's worker.
        reason = storage_failure(exc)
        if reason is None:
            raise
        log.error("the %s stopped: the run folder could not be written", what, exc_info=True)
        raise storage_fault(where, reason, command, what) from exc


def record_failed_trials(run_dir: Path, grid: Any) -> None:
    """Write the trial folders Tune ended as ERROR into run.json.

    A trial folder's ``error.txt`` alone does not say that: Tune also writes it for a failure it recovered from (a
    worker that died, a node that left), after which the trial may have finished normally.
    """
    info = load_run_info(run_dir)
    info["failed_trials"] = sorted(Path(r.path).name for r in grid if r.error is not None)
    write_run_info(run_dir, info)


def locate_resume(resume: str) -> Path:
    """The local run directory of ``--resume RESUME``; a run kept at a URI has its own files fetched into
    ``runs/<name>`` first (to resume on a machine that has no mirror)."""
    if is_uri(resume):
        run_dir = Path("runs").resolve() / resume.rstrip("/").rsplit("/", 1)[-1]
        pull_run_files(resume, run_dir)
        return run_dir
    return Path(resume).expanduser().resolve()


def check_resumable(run_dir: Path, info: dict[str, Any], trust: bool, command: str) -> str:
    """The Tune experiment ``--resume`` may restore (the run's storage URI or ``run_dir``), after the checks that come
    before anything is unpickled: not finished, created on this machine (or ``--trust-run``), Tune state present."""
    if info.get("finished") is True:
        raise UserError(
            f"--resume: {run_dir} was finished (ended {info.get('ended', 'at an unknown time')}); nothing to "
            f"resume. Start a new run with --name, or rebuild its files with {command}"
        )
    storage = info.get("storage", "")
    experiment = run_uri(storage, info["name"]) if isinstance(storage, str) and is_uri(storage) else str(run_dir)
    if not is_trusted(experiment, info.get("run_id")):
        if not trust:
            raise UserError(
                f"--resume: {experiment} was not created on this machine (not in {registry_path()}); resuming "
                "unpickles its Tune state, which can run code. If you trust this folder, add --trust-run"
            )
        if isinstance(info.get("run_id"), str) and info["run_id"]:
            trust_run(experiment, info["run_id"])
    from ray.tune import Tuner

    if not Tuner.can_restore(experiment):
        raise UserError(f"--resume: {experiment} holds no Ray Tune experiment state to resume")
    return experiment


def resume_settings(
    resume: str,
    trust: bool,
    address: str | None,
    settings_from_run_info: Callable[[dict[str, Any], Path, str | None], Any],
    rebuild: str,
) -> tuple[Path, Any]:
    """``--resume RESUME``: the run directory and its saved settings (read by ``settings_from_run_info``), after every
    check that comes before Tune state is unpickled (:func:`check_resumable`; ``rebuild`` names the commands that
    rebuild a finished run's files)."""
    run_dir = locate_resume(resume)
    info = load_run_info(run_dir)
    settings = settings_from_run_info(info, run_dir, address)
    check_resumable(run_dir, info, trust, rebuild)
    return run_dir, settings


def check_saved_settings(saved: dict[str, Any], where: Path, cls: type) -> None:
    """Each saved flag of a run.json is a field of the settings dataclass ``cls`` and has its type: a hand-edited
    file is an error naming the key."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(saved) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for key, value in saved.items():
        kind = str(known[key].type)
        ok = (
            (value is None and "None" in kind)
            or (kind.startswith("str") and isinstance(value, str))
            or (kind.startswith("bool") and isinstance(value, bool))
            or (kind.startswith("int") and isinstance(value, int) and not isinstance(value, bool))
            or (kind.startswith("float") and isinstance(value, (int, float)) and not isinstance(value, bool))
        )
        if not ok:
            raise UserError(f"{where}: setting {key} is {value!r}; expected {kind}")


def build_report_line(run_dir: Path) -> str:
    """Build the run's report; the line to show. A report that fails is logged with the command to rebuild it and
    does not fail the run: the trials are done and their files are what matters."""
    try:
        from reports.build import build_report

        return f"report:       {build_report(run_dir)}"
    except Exception as exc:  # noqa: BLE001 - any failure here must leave the run intact
        rebuild = f"python -m reports.build {run_dir}"
        log.error(
            "the report could not be built (%s: %s); rebuild it with: %s",
            type(exc).__name__,
            exc,
            rebuild,
            exc_info=True,
        )
        return f"report:       not built ({type(exc).__name__}: {exc}); rebuild it with: {rebuild}"


def mark_finished(run_dir: Path, uri: str | None) -> Path:
    """At the end of a run: run.json marked finished with the end time, the trials' result files pulled from the
    storage ``uri`` (if any) and ``trials.csv`` written; returns its path."""
    info = load_run_info(run_dir)
    info["finished"] = True
    info["ended"] = datetime.now(timezone.utc).isoformat()
    write_run_info(run_dir, info)
    if uri is not None:
        pull_trial_files(uri, run_dir)
    return write_trials_csv(run_dir)


def report_and_push(run_dir: Path, report: bool, uri: str | None, out: Callable[[str], None]) -> None:
    """The last steps of a run: the report (unless ``report`` is off), the run's own files copied to the storage
    ``uri`` last (so it holds the whole run, whether the report could be built or not), the paths shown."""
    if report:
        out(build_report_line(run_dir))
    if uri is not None:
        push_run_files(run_dir, uri)
        out(f"storage:      {uri}  (local mirror: {run_dir})")
    out(f"run dir:      {run_dir}")


def run_or_interrupted(run: Callable[[], Path], metric: str) -> int:
    """Exit code of ``run()``: 130 with the resume hint if it was interrupted, 1 with one line if its storage stopped
    taking writes, else :func:`exit_without_result`."""
    try:
        run_dir = run()
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except StorageFault as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return exit_without_result(run_dir, metric)


def exit_without_result(run_dir: Path, metric: str) -> int:
    """0 if some trial scored ``metric``; else 1 with one line: the first trial error and where the logs are."""
    trials = load_trials(run_dir)
    if metric in trials.columns and trials[metric].notna().any():
        return 0
    errors = trials[trials["error"].fillna("").astype(str).ne("")] if "error" in trials.columns else trials.iloc[0:0]
    first = ""
    if not errors.empty:
        row = errors.iloc[0]
        first = f"; first error (trial {row['trial_id']}): {' '.join(str(row['error']).split())[:300]}"
        logs = f"{run_dir / str(row['trial_dir']) / 'error.txt'}"
    else:
        logs = str(run_dir)
    print(
        f"error: no trial reported {metric} ({len(trials.groupby('trial_id'))} trial(s)){first}; logs: {logs}",
        file=sys.stderr,
    )
    return 1
