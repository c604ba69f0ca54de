"""THE ranking rule: which epoch of a trial counts, how trials rank, and what follows from it.

A trial counts at its best epoch on the run's metric (highest, or lowest for a loss); trials rank by that value, ties
broken by the earlier best epoch, trials that never reported the metric last. :func:`rank_trials` is the only place
that says so: the leaderboard (console and report), ``search.export`` (through :func:`best_trial`), the report pages
and :func:`top_trials` all call it, so changing the rule is one edit here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from runstore.errors import UserError
from runstore.layout import load_run_info, run_metric
from runstore.metrics import metric_mode
from runstore.trials import load_trials

__all__ = [
    "BestTrial",
    "best_trial",
    "counting_epoch",
    "is_recipe",
    "leaderboard",
    "plain",
    "rank_trials",
    "top_trials",
]


def plain(v: Any) -> Any:
    """numpy / pandas scalars to plain Python values (NaN -> None), e.g. for JSON or an HTML table."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def is_recipe(table: pd.DataFrame) -> pd.Series:
    """Per row: was this trial one of the seed recipes (its ``config/recipe`` is set)?"""
    if "config/recipe" not in table.columns:
        return pd.Series(False, index=table.index, dtype=bool)
    return table["config/recipe"].fillna("").astype(str).ne("")


def counting_epoch(values: Mapping[int, float], mode: str) -> tuple[int, float] | None:
    """THE rule for which epoch of a trial counts: its best finite value of the metric (``mode`` "max" or "min"),
    the earliest such epoch on a tie; ``None`` when it reported none. ``values`` maps epoch -> metric value."""
    finite = sorted((int(e), float(v)) for e, v in values.items() if v is not None and math.isfinite(float(v)))
    if not finite:
        return None
    pick = max if mode == "max" else min
    best = pick(v for _, v in finite)
    return next((e, v) for e, v in finite if v == best)


def rank_trials(trials: pd.DataFrame, metric: str, mode: str | None = None) -> pd.DataFrame:
    """One row per trial at the epoch that counts (its best by ``metric``), best trial first.

    Each row is that epoch's row of the trial table (metrics, config, ``order``, status) plus ``best_epoch`` (0 when
    the trial reported no ``metric``), ``rank`` (1-based) and ``is_recipe``.
    """
    mode = metric_mode(metric, mode)
    if trials.empty or metric not in trials.columns:
        return pd.DataFrame(columns=["rank", "trial_id", "order", "status", metric, "best_epoch", "epochs_done"])
    rows = []
    for _tid, df in trials.groupby("trial_id", sort=False):
        scored = df.dropna(subset=[metric])
        epochs = scored["epoch"] if "epoch" in scored.columns else pd.Series(range(1, len(scored) + 1), scored.index)
        counted = counting_epoch(dict(zip(epochs.astype(int), scored[metric])), mode)
        if counted is None:
            best = df.iloc[-1].copy()
            best["best_epoch"] = 0
        else:
            best = scored.loc[(epochs.astype(int) == counted[0]).idxmax()].copy()
            best["best_epoch"] = counted[0]
        rows.append(best)
    ranked = pd.DataFrame(rows).sort_values(
        [metric, "best_epoch"], ascending=[mode == "min", True], na_position="last", kind="stable"
    )
    ranked = ranked.reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    ranked["is_recipe"] = is_recipe(ranked)
    return ranked


def leaderboard(ranked: pd.DataFrame, top: int) -> pd.DataFrame:
    """The ``top`` best trials of a :func:`rank_trials` table, and every seed recipe wherever it ranked."""
    if ranked.empty:
        return ranked
    return ranked[(ranked["rank"] <= top) | ranked["is_recipe"]]


@dataclass
class BestTrial:
    """A trial at the epoch that counts: its config (TrialConfig keys), that epoch and its metrics."""

    trial_id: str
    config: dict[str, Any]
    best_epoch: int
    metrics: dict[str, float]
    trial_dir: str


def _best_trial_of(row: pd.Series) -> BestTrial:
    config = {k.split("/", 1)[1]: plain(v) for k, v in row.items() if str(k).startswith("config/")}
    metrics = {
        k: float(v)
        for k, v in row.items()
        if (k.startswith("val_") or k.startswith("train_")) and isinstance(v, (int, float)) and math.isfinite(v)
    }
    config = {k: v for k, v in config.items() if v is not None}
    return BestTrial(str(row["trial_id"]), config, int(row["best_epoch"]), metrics, str(row["trial_dir"]))


def top_trials(run_dir: str | Path, k: int, metric: str | None = None, mode: str | None = None) -> list[BestTrial]:
    """The ``k`` best trials of a run whose configs differ (``seed`` aside), each at its best epoch.

    ``metric`` defaults to the run's. A trial whose config repeats a better trial's is skipped, so the list holds k
    distinct recipes (fewer when the run has fewer scored ones). Trials that never reported ``metric`` are left out.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    run_dir = Path(run_dir)
    run_default, run_mode = run_metric(load_run_info(run_dir))
    metric = metric or run_default
    mode = mode or (run_mode if metric == run_default else None)
    ranked = rank_trials(load_trials(run_dir), metric, mode)
    if metric not in ranked.columns:
        return []
    chosen: list[BestTrial] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for _, row in ranked.dropna(subset=[metric]).iterrows():
        trial = _best_trial_of(row)
        key = tuple(sorted((name, repr(v)) for name, v in trial.config.items() if name != "seed"))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def best_trial(run_dir: str | Path, metric: str | None = None, mode: str | None = None) -> BestTrial:
    """The trial that ranks first on ``metric`` (default: the run's); a ``UserError`` when none has reported it."""
    best = top_trials(run_dir, 1, metric, mode)
    if not best:
        metric = metric or run_metric(load_run_info(run_dir))[0]
        raise UserError(f"{run_dir}: no trial has reported {metric} yet; nothing to export")
    return best[0]
