"""The files of a run directory, and its ``run.json``.

Layout of ``runs/<name>/`` (Ray Tune writes the trial folders; this project writes the rest)::

    run.json            flags, space, task, metric, data fingerprint, start time, finished flag; ``kind``: search
                        (absent in older runs) or study, whose definition is under ``study`` (search.study)
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

from runstore.atomic import write_text
from runstore.errors import UserError
from runstore.metrics import DEFAULT_METRIC

__all__ = [
    "BEST_FILE",
    "PAGES_MANIFEST",
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
#: In a report folder: the pages the last build wrote, so the next build can remove the ones it no longer writes.
PAGES_MANIFEST = ".pages.json"
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
        info = json.loads((run_dir / RUN_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{run_dir / RUN_FILE}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{run_dir / RUN_FILE}: cannot be read ({exc})") from exc
    if not isinstance(info, dict):
        raise UserError(f"{run_dir / RUN_FILE}: expected a JSON object written by search.run")
    _check_run_info(info, run_dir / RUN_FILE)
    return info


#: run.json keys the commands read, and the JSON type each must have when present.
_RUN_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "space": (str,),
    "task": (str,),
    "metric": (str,),
    "mode": (str,),
    "rung_metric": (str,),
    "max_epochs": (int,),
    "num_samples": (int,),
    "finished": (bool,),
    "settings": (dict,),
    "data": (dict,),
    "failed_trials": (list,),
    "run_id": (str,),
    "kind": (str,),  # "search" (also when absent: runs from before studies) or "study"
    "study": (dict,),  # a study's definition: name, factors, levels, seeds, epochs, base (search.study)
}


def _check_run_info(info: dict[str, Any], where: Path) -> None:
    """A hand-edited or damaged run.json is one error naming the key, not a traceback in a report or export."""
    for key, types in _RUN_KEYS.items():
        value = info.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            raise UserError(f"{where}: {key} is {value!r}; expected {' or '.join(t.__name__ for t in types)}")
    if info.get("kind") not in (None, "search", "study"):
        raise UserError(f"{where}: kind is {info['kind']!r}; expected search or study")
    if info.get("mode") not in (None, "min", "max"):
        raise UserError(f"{where}: mode is {info['mode']!r}; expected min or max")
    if isinstance(info.get("max_epochs"), int) and info["max_epochs"] < 1:
        raise UserError(f"{where}: max_epochs is {info['max_epochs']}; expected >= 1")
    if not all(isinstance(n, str) for n in info.get("failed_trials") or []):
        raise UserError(f"{where}: failed_trials must list trial folder names")


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    write_text(run_dir / RUN_FILE, json.dumps(info, indent=2, sort_keys=True, default=str))


def run_metric(info: dict[str, Any]) -> tuple[str, str | None]:
    """The metric a run selects by and its mode as run.json records them (older runs: under ``settings``)."""
    settings = info.get("settings") or {}
    metric = str(info.get("metric") or settings.get("metric") or DEFAULT_METRIC)
    mode = info.get("mode") or settings.get("mode")
    return metric, (str(mode) if mode else None)
