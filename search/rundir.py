"""The run directory: what one search leaves on disk, and how to read it back as a table.

Layout of ``runs/<name>/`` (Ray Tune writes the trial folders; this project writes the rest)::

    run.json            flags, space, task, metric, data fingerprint, start time, finished flag
    study.db            the Optuna study (SQLite): optuna-dashboard sqlite:///study.db, optuna.load_study
    trials.csv          one row per trial per epoch, config columns included
    best_config.json    the best trial's config, validation metrics and provenance (search.export)
    <trial folders>/    Ray Tune's result.json (one JSON line per epoch), params.json, error.txt, checkpoints
    tuner.pkl, experiment_state-*.json, searcher state   what ``--resume`` restores

Trials are read from their ``result.json`` files, so a run still going or one that was killed reads as far as it got.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from runstore.atomic import write_text
from search.errors import UserError

__all__ = [
    "RUN_FILE",
    "STUDY_FILE",
    "TRIALS_FILE",
    "BEST_FILE",
    "BestTrial",
    "best_trial",
    "is_run_dir",
    "load_run_info",
    "load_trials",
    "trial_summary",
    "write_run_info",
    "write_trials_csv",
]

RUN_FILE = "run.json"
STUDY_FILE = "study.db"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best_config.json"

#: Ray Tune names trial folders <trainable>_<trial id>_<index>_<params>_<date>.
_TRIAL_DIR = re.compile(r"_([0-9a-f]{5,})_(\d+)_")

#: Metrics where lower is better; every other metric is maximised.
_MINIMISED = {"val_loss", "train_loss"}


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
}


def _check_run_info(info: dict[str, Any], where: Path) -> None:
    """A hand-edited or damaged run.json is one error naming the key, not a traceback in a report or export."""
    for key, types in _RUN_KEYS.items():
        value = info.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            raise UserError(f"{where}: {key} is {value!r}; expected {' or '.join(t.__name__ for t in types)}")
    if info.get("mode") not in (None, "min", "max"):
        raise UserError(f"{where}: mode is {info['mode']!r}; expected min or max")
    if isinstance(info.get("max_epochs"), int) and info["max_epochs"] < 1:
        raise UserError(f"{where}: max_epochs is {info['max_epochs']}; expected >= 1")
    if not all(isinstance(n, str) for n in info.get("failed_trials") or []):
        raise UserError(f"{where}: failed_trials must list trial folder names")


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    write_text(run_dir / RUN_FILE, json.dumps(info, indent=2, sort_keys=True, default=str))


def _read_result_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written as we read: the run is still going
            break
    return rows


def _read_params(path: Path) -> dict[str, Any]:
    """A trial's params.json (Ray writes it when the trial starts); a damaged one is an error naming it."""
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: not a trial's params.json ({exc})") from exc
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a trial's params.json (expected a JSON object of the trial's config)")
    return config


def _trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("*/params.json"))


def load_trials(run_dir: str | Path) -> pd.DataFrame:
    """One row per trial per reported epoch, with ``config/<key>`` columns and a ``status`` per trial.

    Status: ``COMPLETED`` (trained every epoch), ``STOPPED`` (stopped early by ASHA), ``ERROR`` (failed, with the first
    line of its error in ``error``), ``RUNNING`` (the run is not finished and neither is the trial). Trials that failed
    before their first epoch appear as one row with no metrics. A trial that failed and was recovered (retried from its
    checkpoint) keeps the failure in ``error`` but not the ``ERROR`` status.
    """
    run_dir = Path(run_dir)
    info = load_run_info(run_dir) if is_run_dir(run_dir) else {}
    finished = bool(info.get("finished", False)) if info else True
    # Written by search.run when Tune returns; absent while a run goes on or after its driver was killed.
    failed = set(info["failed_trials"]) if "failed_trials" in info else None
    frames = []
    for tdir in _trial_dirs(run_dir):
        config = _read_params(tdir / "params.json")
        rows = _read_result_lines(tdir / "result.json") if (tdir / "result.json").exists() else []
        error_file = tdir / "error.txt"
        error = ""
        if error_file.exists():
            lines = [ln for ln in error_file.read_text().splitlines() if ln.strip()]
            error = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "error")[:500]
        epochs_planned = int(config.get("epochs", 0) or 0)
        epochs_done = max((int(r.get("epoch", 0)) for r in rows), default=0)
        if (error and failed is None) or (failed is not None and tdir.name in failed):
            status = "ERROR"
        elif epochs_planned and epochs_done >= epochs_planned:
            status = "COMPLETED"
        elif finished:
            status = "STOPPED"
        else:
            status = "RUNNING"
        m = _TRIAL_DIR.search(tdir.name)
        trial_id = rows[0].get("trial_id") if rows else (m.group(1) if m else tdir.name)
        keep = [
            {k: v for k, v in r.items() if k != "config" and not isinstance(v, (dict, list))} | {"trial_id": trial_id}
            for r in rows
        ] or [{"trial_id": trial_id}]
        df = pd.DataFrame(keep)
        for k, v in config.items():
            df[f"config/{k}"] = v if not isinstance(v, (list, dict)) else json.dumps(v)
        df["status"] = status
        df["error"] = error
        df["trial_dir"] = tdir.name
        df["epochs_done"] = epochs_done
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "status", "epoch"])
    out = pd.concat(frames, ignore_index=True)
    order = ["trial_id", "status", "epoch"] + [c for c in out.columns if c not in ("trial_id", "status", "epoch")]
    return out[[c for c in order if c in out.columns]]


def write_trials_csv(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / TRIALS_FILE
    write_text(path, load_trials(run_dir).to_csv(index=False))
    return path


def metric_mode(metric: str, mode: str | None = None) -> str:
    """``mode`` if given, else "min" for a loss and "max" for every other metric."""
    return mode or ("min" if metric in _MINIMISED else "max")


def trial_summary(trials: pd.DataFrame, metric: str, mode: str | None = None) -> pd.DataFrame:
    """One row per trial: its best epoch by ``metric`` with that epoch's metrics, config, status and epochs run."""
    mode = metric_mode(metric, mode)
    if trials.empty or metric not in trials.columns:
        return pd.DataFrame(columns=["trial_id", "status", metric, "best_epoch", "epochs_done"])
    rows = []
    for _tid, df in trials.groupby("trial_id", sort=False):
        scored = df.dropna(subset=[metric])
        if scored.empty:
            best = df.iloc[-1].copy()
            best["best_epoch"] = 0
        else:
            i = scored[metric].idxmax() if mode == "max" else scored[metric].idxmin()
            best = scored.loc[i].copy()
            best["best_epoch"] = int(best.get("epoch", 0))
        rows.append(best)
    summary = pd.DataFrame(rows).reset_index(drop=True)
    ascending = mode == "min"
    return summary.sort_values([metric, "best_epoch"], ascending=[ascending, True], na_position="last").reset_index(
        drop=True
    )


@dataclass
class BestTrial:
    """The selected trial: its config (TrialConfig keys), best epoch and that epoch's validation metrics."""

    trial_id: str
    config: dict[str, Any]
    best_epoch: int
    metrics: dict[str, float]
    trial_dir: str


def best_trial(run_dir: str | Path, metric: str | None = None, mode: str | None = None) -> BestTrial:
    """Pick the trial whose best epoch scores highest on ``metric`` (default: the run's metric)."""
    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    metric = metric or info.get("metric", "val_balanced_acc")
    mode = mode or info.get("mode")
    trials = load_trials(run_dir)
    summary = trial_summary(trials, metric, mode)
    summary = summary.dropna(subset=[metric]) if metric in summary.columns else summary.iloc[0:0]
    if summary.empty:
        raise UserError(f"{run_dir}: no trial has reported {metric} yet; nothing to export")
    top = summary.iloc[0]
    config = {k.split("/", 1)[1]: _plain(v) for k, v in top.items() if k.startswith("config/")}
    config = {k: v for k, v in config.items() if v is not None}
    metrics = {
        k: float(v)
        for k, v in top.items()
        if (k.startswith("val_") or k.startswith("train_")) and isinstance(v, (int, float)) and math.isfinite(v)
    }
    return BestTrial(str(top["trial_id"]), config, int(top["best_epoch"]), metrics, str(top["trial_dir"]))


def _plain(v: Any) -> Any:
    """pandas scalars -> JSON-able Python values (NaN -> None)."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
