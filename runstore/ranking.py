"""THE ranking rule: which epoch of a trial counts, how trials rank, and what follows from it.

A trial counts at the epoch :func:`counting_epoch` picks on the run's metric: among its epochs within 0.02 of its
best value, the one with the lowest validation loss (benchmarks/selection.py measured it over seeds against the best
single epoch: it holds up better on unseen data). Trials rank by that epoch's value, ties broken by the earlier
epoch, trials that never reported the metric last. :func:`rank_trials` is the only place that says so: the
leaderboard (console and report), ``search.export`` (through :func:`best_trial`), the report pages, :func:`top_trials`
and the Optuna study's values (``search.searcher``) all call it, so changing the rule is one edit here.
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
    "DEFAULT_SELECTION",
    "LOSSES_ATTR",
    "SELECTION_RULES",
    "TIE_LOSS",
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


def _finite(values: Mapping[int, float]) -> list[tuple[int, float]]:
    return sorted((int(e), float(v)) for e, v in values.items() if v is not None and math.isfinite(float(v)))


def best_epoch_rule(
    values: Mapping[int, float], mode: str, losses: Mapping[int, float] | None = None
) -> tuple[int, float] | None:
    """The best single epoch: its best finite value (``mode`` "max" or "min"), the earliest on a tie."""
    finite = _finite(values)
    if not finite:
        return None
    pick = max if mode == "max" else min
    best = pick(v for _, v in finite)
    return next((e, v) for e, v in finite if v == best)


def smoothed_rule(
    values: Mapping[int, float], mode: str, losses: Mapping[int, float] | None = None
) -> tuple[int, float] | None:
    """The epoch whose centred 3-epoch mean (itself and the reported epochs either side) is best, valued at that
    mean: one lucky epoch on a small validation set neither picks the epoch nor sets the trial's score. Ties go to
    the better single epoch, then the earlier."""
    finite = _finite(values)
    if not finite:
        return None
    sign = 1.0 if mode == "max" else -1.0
    scored = []
    for i, (e, v) in enumerate(finite):
        window = [w for _, w in finite[max(0, i - 1) : i + 2]]
        scored.append((sign * sum(window) / len(window), sign * v, -e, sum(window) / len(window)))
    _, _, neg_e, mean = max(scored)
    return -neg_e, mean


#: How close (in the metric's units) an epoch must come to the best to count as a tie for :func:`loss_tie_rule`.
LOSS_TIE_TOLERANCE = 0.02


def loss_tie_rule(
    values: Mapping[int, float], mode: str, losses: Mapping[int, float] | None = None
) -> tuple[int, float] | None:
    """Among epochs within :data:`LOSS_TIE_TOLERANCE` of the best value, the one with the lowest validation loss."""
    best = best_epoch_rule(values, mode)
    if best is None or not losses:
        return best
    sign = 1.0 if mode == "max" else -1.0
    tied = [(e, v) for e, v in _finite(values) if sign * (best[1] - v) <= LOSS_TIE_TOLERANCE]
    scored = [
        (float(losses[e]), -sign * v, e, v) for e, v in tied if losses.get(e) is not None and math.isfinite(losses[e])
    ]
    if not scored:
        return best
    _, _, e, v = min(scored)  # lowest loss; on equal losses the better value, then the earlier epoch
    return e, v


def last_epoch_rule(
    values: Mapping[int, float], mode: str, losses: Mapping[int, float] | None = None
) -> tuple[int, float] | None:
    """The last reported epoch (what a trial's final result says)."""
    finite = _finite(values)
    return finite[-1] if finite else None


#: Candidate rules for the epoch that counts, compared over seeds by benchmarks/selection.py.
SELECTION_RULES = {
    "best": best_epoch_rule,
    "smooth3": smoothed_rule,
    "loss_tie": loss_tie_rule,
    "last": last_epoch_rule,
}
#: The rule :func:`counting_epoch` applies (chosen by benchmarks/selection.py; README "From search to a final model").
DEFAULT_SELECTION = "loss_tie"
#: The loss the loss-aware rule breaks near-ties with, and the Optuna user attribute a search keeps it in per epoch.
TIE_LOSS = "val_loss"
LOSSES_ATTR = "val_loss_by_epoch"


def counting_epoch(
    values: Mapping[int, float], mode: str, losses: Mapping[int, float] | None = None
) -> tuple[int, float] | None:
    """THE rule for which epoch of a trial counts (:data:`DEFAULT_SELECTION`) and the value it counts with;
    ``None`` when the trial reported none. ``values`` maps epoch -> metric value, ``losses`` epoch -> validation
    loss (without them, or when ranking by the loss itself, the best single epoch counts)."""
    return SELECTION_RULES[DEFAULT_SELECTION](values, mode, losses)


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
        losses = (
            dict(zip(epochs.astype(int), scored[TIE_LOSS]))
            if TIE_LOSS in scored.columns and metric != TIE_LOSS
            else None
        )
        counted = counting_epoch(dict(zip(epochs.astype(int), scored[metric])), mode, losses)
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
