"""The run a report shows, read once through ``runstore``, and the small value rules every page shares.

A trial's *score* is the run's metric at the epoch that counts (``runstore.ranking``: its best epoch), the same
number the leaderboard and ``search.export`` use. Trials are numbered in the order Ray Tune created them
(``runstore.trials``), so the seed recipes, queued first, come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runstore.layout import load_run_info, run_metric
from runstore.metrics import metric_mode
from runstore.ranking import plain, rank_trials
from runstore.trials import load_trials
from trainables.augment_config import AUGMENT_OPS
from trainables.augment_config import augment_ops_on as _ops_on

__all__ = [
    "AUGMENT_OPS",
    "RunData",
    "TrialCounts",
    "augment_ops_on",
    "category_key",
    "col",
    "image_pixels",
    "load_run",
    "num",
    "plain",
]


@dataclass
class TrialCounts:
    """How many trials a run holds and how they ended; every page prints this in small type."""

    total: int = 0
    completed: int = 0
    stopped: int = 0
    failed: int = 0
    failed_before_first_epoch: int = 0
    running: int = 0
    scored: int = 0  # trials that reported the metric at least once
    epochs: int = 0  # epochs trained, summed over trials

    def describe(self) -> str:
        parts = [f"{self.completed} completed", f"{self.stopped} stopped early"]
        parts.append(
            f"{self.failed} failed"
            + (
                f" ({self.failed_before_first_epoch} before their first epoch)"
                if self.failed_before_first_epoch
                else ""
            )
        )
        if self.running:
            parts.append(f"{self.running} running")
        return f"{self.total} trials ({', '.join(parts)}); {self.scored} reported a score; {self.epochs} epochs trained"


@dataclass
class RunData:
    """One run read once: run.json, the per-epoch table and the per-trial summary every collector works from."""

    run_dir: Path
    name: str
    info: dict[str, Any]
    classes: list[str]
    metric: str
    mode: str
    finished: bool
    max_epochs: int
    trials: pd.DataFrame  # one row per trial per epoch (runstore.trials.load_trials)
    summary: pd.DataFrame  # one row per trial at the epoch that counts, best first (runstore.ranking.rank_trials)
    counts: TrialCounts

    @property
    def scored(self) -> pd.DataFrame:
        """Summary rows of trials that reported the metric at least once, best first."""
        if self.metric not in self.summary.columns:
            return self.summary.iloc[0:0]
        return self.summary[self.summary[self.metric].notna()]

    @property
    def chance(self) -> float:
        """Balanced accuracy of a classifier that always answers one class."""
        return 1.0 / len(self.classes) if self.classes else float("nan")

    @property
    def score_definition(self) -> str:
        return f"A trial's score is its {self.metric} at its best epoch."

    @property
    def scored_note(self) -> str:
        """The small print of a page whose figures use the scored trials."""
        return f"The figures on this page use the {self.counts.scored} trial(s) that reported {self.metric}."


def _classes(info: dict[str, Any], trials: pd.DataFrame) -> list[str]:
    data = info.get("data") or {}
    classes = data.get("classes") if isinstance(data, dict) else None
    if classes:
        return [str(c) for c in classes]
    # Older or foreign runs: the per-class recall columns, in column order.
    return [c[len("val_recall_") :] for c in trials.columns if c.startswith("val_recall_")]


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory (finished or still going); a clear ``UserError`` when it holds no run."""
    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    settings = info.get("settings") or {}
    metric, mode = run_metric(info)
    mode = metric_mode(metric, mode)
    trials = load_trials(run_dir)
    summary = rank_trials(trials, metric, mode)
    if "is_recipe" not in summary.columns:
        summary["is_recipe"] = pd.Series(dtype=bool)
    max_epochs = info.get("max_epochs") or settings.get("max_epochs")
    if not max_epochs and "config/epochs" in trials.columns and trials["config/epochs"].notna().any():
        max_epochs = trials["config/epochs"].max()
    return RunData(
        run_dir=run_dir,
        name=str(info.get("name") or run_dir.name),
        info=info,
        classes=_classes(info, trials),
        metric=metric,
        mode=mode,
        finished=bool(info.get("finished", False)),
        max_epochs=int(max_epochs or 0),
        trials=trials,
        summary=summary,
        counts=_counts(trials, summary, metric),
    )


def _counts(trials: pd.DataFrame, summary: pd.DataFrame, metric: str) -> TrialCounts:
    if trials.empty:
        return TrialCounts()
    per_trial = trials.groupby("trial_id", sort=False).agg(status=("status", "first"), epochs=("epochs_done", "max"))
    status = per_trial["status"]
    return TrialCounts(
        total=len(per_trial),
        completed=int((status == "COMPLETED").sum()),
        stopped=int((status == "STOPPED").sum()),
        failed=int((status == "ERROR").sum()),
        failed_before_first_epoch=int(((status == "ERROR") & (per_trial["epochs"] == 0)).sum()),
        running=int((status == "RUNNING").sum()),
        scored=int(summary[metric].notna().sum()) if metric in summary.columns else 0,
        epochs=int(per_trial["epochs"].sum()),
    )


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or a column of NaN when the run never wrote it (a run with no results, an older run)."""
    return df[name] if name in df.columns else pd.Series(np.nan, index=df.index, dtype="float64")


def num(v: Any) -> float:
    """A config or metric value as float; NaN for missing, None, or text."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def augment_ops_on(config: pd.Series | dict[str, Any]) -> list[str]:
    """The augmentation ops a trial's config turns on (``trainables.augment_config``), from ``config/<key>`` values."""
    return _ops_on({op: config.get(f"config/{op}") for op in AUGMENT_OPS})


def category_key(text: str) -> tuple[int, float, str]:
    """Sort categories numerically where they are numbers (or image sizes), else alphabetically."""
    size = image_pixels(text)
    if size is not None:
        return (0, float(size), text)
    return (1, 0.0, text)


def image_pixels(text: str) -> int | None:
    """``"64"`` -> 4096, ``"96x112"`` -> 10752; None if ``text`` is not an image size (or plain number)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:x\s*(\d+))?\s*", str(text))
    if not m:
        return None
    h = int(m.group(1))
    return h * int(m.group(2) or h)
