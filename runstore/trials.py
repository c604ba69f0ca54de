"""The trial table: one row per trial per reported epoch, read from the trial folders Ray Tune writes.

Columns: ``trial_id``, ``order`` (the order Ray Tune created the trials in, 1-based: the seed recipes, queued first,
come first), ``status``, ``epoch``, every reported metric, ``config/<key>`` per config value, ``error``,
``trial_dir`` and ``epochs_done``. ``trials.csv`` is this table written out. Trials are read from their
``result.json`` files, so a run still going or one that was killed reads as far as it got.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from runstore.atomic import write_text
from runstore.errors import UserError
from runstore.layout import TRIALS_FILE, is_run_dir, load_run_info

__all__ = ["FRONT_COLUMNS", "last_start", "load_trials", "parse_result_lines", "trial_order", "write_trials_csv"]

#: Ray Tune names trial folders <trainable>_<trial id>_<index>_<params>_<date>; the index is the creation order.
_TRIAL_DIR = re.compile(r"_([0-9a-f]{5,})_(\d+)_")

#: The columns every trial table starts with, in this order.
FRONT_COLUMNS = ("trial_id", "order", "status", "epoch")


def trial_order(trial_dir: str) -> int | None:
    """The creation index Ray Tune put in a trial folder's name; None for a name that does not follow its pattern."""
    m = _TRIAL_DIR.search(str(trial_dir))
    return int(m.group(2)) if m else None


def parse_result_lines(text: str) -> list[dict[str, Any]]:
    """The results in the text of a trial's ``result.json`` (one JSON object a line), up to a line being written."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written as we read: the run is still going
            break
    return rows


def last_start(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs of a trial's last start: a trial whose checkpoint could not be read on ``--resume`` trains again
    from epoch 1 (trainables.train), and the epochs reported before belong to a model that is gone. They stay in
    Ray's ``result.json``; the trial table keeps the new run only. Any other repeated epoch is left as it is (a bug
    to see, not to hide)."""
    restarts = [i for i, r in enumerate(rows) if i > 0 and r.get("epoch") == 1]
    return rows[restarts[-1] :] if restarts else rows


def _trial_dirs(run_dir: Path) -> list[Path]:
    """Trial folders in creation order; folders whose names carry no index come last, by name."""
    dirs = sorted(p.parent for p in run_dir.glob("*/params.json"))
    return sorted(dirs, key=lambda d: (trial_order(d.name) is None, trial_order(d.name) or 0))


def _read_params(path: Path) -> dict[str, Any]:
    """A trial's params.json (Ray writes it when the trial starts); a damaged one is an error naming it."""
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: not a trial's params.json ({exc})") from exc
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a trial's params.json (expected a JSON object of the trial's config)")
    return config


def load_trials(run_dir: str | Path) -> pd.DataFrame:
    """One row per trial per reported epoch, with ``config/<key>`` columns, a ``status`` and an ``order`` per trial.

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
    for position, tdir in enumerate(_trial_dirs(run_dir), start=1):
        config = _read_params(tdir / "params.json")
        result = tdir / "result.json"
        rows = last_start(parse_result_lines(result.read_text())) if result.exists() else []
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
        df["order"] = trial_order(tdir.name) or position
        df["status"] = status
        df["error"] = error
        df["trial_dir"] = tdir.name
        df["epochs_done"] = epochs_done
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(FRONT_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    order = list(FRONT_COLUMNS) + [c for c in out.columns if c not in FRONT_COLUMNS]
    return out[[c for c in order if c in out.columns]]


def write_trials_csv(run_dir: str | Path) -> Path:
    """Write :func:`load_trials` of ``run_dir`` to its ``trials.csv``; return the path."""
    run_dir = Path(run_dir)
    path = run_dir / TRIALS_FILE
    write_text(path, load_trials(run_dir).to_csv(index=False))
    return path
