"""The files of a run directory, and its ``run.json``.

Layout of ``runs/<name>/`` (Ray Tune writes the trial folders; this project writes the rest)::

    run.json            flags, space, task, metric, data fingerprint, start time, finished flag
    study.db            the Optuna study (SQLite): optuna-dashboard sqlite:///study.db, optuna.load_study
    trials.csv          one row per trial per epoch, config columns included (runstore.trials)
    best_config.json    the best trial's config, validation metrics and provenance (search.export)
    report/             the HTML report (python -m reports.build)
    <trial folders>/    Ray Tune's result.json (one JSON line per epoch), params.json, error.txt, checkpoints
    tuner.pkl, experiment_state-*.json, searcher state   what ``--resume`` restores
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runstore.errors import UserError
from runstore.metrics import DEFAULT_METRIC

__all__ = [
    "BEST_FILE",
    "REPORT_DIR",
    "RUN_FILE",
    "LOG_FILE",
    "RUN_FILES",
    "STUDY_FILE",
    "TRIALS_FILE",
    "is_run_dir",
    "load_run_info",
    "run_metric",
    "write_run_info",
]

RUN_FILE = "run.json"
STUDY_FILE = "study.db"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best_config.json"
REPORT_DIR = "report"
#: The search's full log (Ray's and the driver's output; the console shows a summary).
LOG_FILE = "search.log"
#: The run directory's own files (not Ray Tune's); ``report`` is a folder.
RUN_FILES = (RUN_FILE, STUDY_FILE, TRIALS_FILE, BEST_FILE, REPORT_DIR, LOG_FILE)


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def load_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory; a clear error when the directory holds no run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: holds no run (no {RUN_FILE}); expected a directory written by search.run")
    try:
        return json.loads((run_dir / RUN_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{run_dir / RUN_FILE}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    tmp.replace(run_dir / RUN_FILE)


def run_metric(info: dict[str, Any]) -> tuple[str, str | None]:
    """The metric a run selects by and its mode as run.json records them (older runs: under ``settings``)."""
    settings = info.get("settings") or {}
    metric = str(info.get("metric") or settings.get("metric") or DEFAULT_METRIC)
    mode = info.get("mode") or settings.get("mode")
    return metric, (str(mode) if mode else None)
