"""The run a report shows, read once through ``runstore``, and the small value rules every page shares.

A trial's *score* is the run's metric at the epoch that counts (``runstore.ranking``: its best epoch), the same
number the leaderboard and ``search.export`` use. Trials are numbered in the order Ray Tune created them
(``runstore.trials``), so the seed recipes, queued first, come first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runstore.errors import UserError
from runstore.layout import TRIALS_FILE, load_run_info, run_metric
from runstore.metrics import metric_mode
from runstore.ranking import plain, rank_trials
from runstore.trials import load_trials
from trainables.augment_config import AUGMENT_OPS
from trainables.augment_config import augment_ops_on as _ops_on

__all__ = [
    "AUGMENT_OPS",
    "RunData",
    "STALL_EPOCHS",
    "STALL_MARGIN",
    "TrialCounts",
    "augment_ops_on",
    "category_key",
    "col",
    "confounded",
    "epochs_near_chance",
    "equal_training",
    "image_pixels",
    "load_run",
    "num",
    "plain",
    "stall_rule",
    "stalled",
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


def _load_trial_table(run_dir: Path) -> pd.DataFrame:
    """The trial table from Ray Tune's trial folders; from ``trials.csv`` when the directory holds no trial folder
    (a run copied without Ray's folders, or one written by hand)."""
    trials = load_trials(run_dir)
    csv = run_dir / TRIALS_FILE
    if trials.empty and csv.is_file():
        try:
            trials = pd.read_csv(csv)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"{csv}: not a trial table ({exc})") from exc
        if "trial_id" not in trials.columns:
            raise UserError(f"{csv}: not a trial table (no trial_id column)")
        trials["trial_id"] = trials["trial_id"].astype(str)
    return trials


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory (finished or still going); a clear ``UserError`` when it holds no run."""
    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    settings = info.get("settings") or {}
    metric, mode = run_metric(info)
    mode = metric_mode(metric, mode)
    trials = _load_trial_table(run_dir)
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


# -- near chance, stalled, equal training --------------------------------------------------------------------------

#: A balanced accuracy within this much of chance (1 / classes) is "near chance": what answering one class scores.
STALL_MARGIN = 0.02
#: A trial "stalled" when it is still near chance after this many epochs; a shorter trial is never called stalled.
STALL_EPOCHS = 5


def epochs_near_chance(values: Sequence[float], chance: float, margin: float = STALL_MARGIN) -> int:
    """How many epochs, from the first, a balanced-accuracy curve stays within ``margin`` of ``chance``.

    The curve "leaves chance" at the next epoch; a curve that never leaves returns its length.
    """
    near = 0
    for v in values:
        if v > chance + margin + 1e-9:
            break
        near += 1
    return near


def stalled(values: Sequence[float], chance: float, epochs: int = STALL_EPOCHS) -> bool | None:
    """Still near chance after ``epochs`` epochs; None when the curve is shorter than that (too short to judge)."""
    if len(values) < epochs:
        return None
    return epochs_near_chance(values[:epochs], chance) >= epochs


def stall_rule(n_classes: int, epochs: int = STALL_EPOCHS) -> str:
    """The stall rule in words, with its numbers."""
    chance = 1.0 / n_classes if n_classes else float("nan")
    return (
        f"stalled = val_balanced_acc still ≤ 1/{n_classes} + {STALL_MARGIN} = {chance + STALL_MARGIN:.3f} at every "
        f"one of the first {epochs} epochs (a model that always answers one class scores exactly 1/{n_classes}); "
        f"a trial that trained fewer than {epochs} epochs is never called stalled"
    )


def equal_training(run: RunData, trial_ids: Sequence[str]) -> tuple[int, pd.Series]:
    """The furthest epoch every one of ``trial_ids`` reported the run's metric at, and each trial's metric there.

    Trials compared at the same number of epochs have seen the same number of training images. With ASHA every
    stopped trial ends at a rung, so this is the furthest rung all of them reached. (0 and an empty Series when none
    of them reported the metric.)
    """
    t = run.trials
    if t.empty or run.metric not in t.columns or not len(trial_ids):
        return 0, pd.Series(dtype="float64")
    t = t[t["trial_id"].astype(str).isin([str(i) for i in trial_ids])].dropna(subset=[run.metric])
    if t.empty:
        return 0, pd.Series(dtype="float64")
    epoch = int(t.groupby("trial_id")["epoch"].max().min())
    at = t[t["epoch"].astype(int) == epoch]
    return epoch, at.groupby(at["trial_id"].astype(str))[run.metric].first().astype(float)


def confounded(factor: str, study: str) -> str:
    """What a search can and cannot say about ``factor``, and the study command that answers the question."""
    return (
        f"A search's data is observational: {factor} moves together with the model, the learning rate, the image size "
        f"and how long ASHA let each trial run, so a difference here is a hint, not an effect of {factor}. The "
        f"controlled answer (one factor varied, every trial trained the same epochs, several seeds per level) is "
        f"python -m search.study {study}."
    )
