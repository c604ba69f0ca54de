"""The batch size page: score and stalls by batch size, learning curves by batch size, batch size against
learning rate; each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.page import PALETTE, Page, esc, escs, layout, table
from reports.rundata import RunData, category_key, col
from runstore.ranking import plain

__all__ = ["BatchSizeStats", "Curve", "STALL_MARGIN", "build_page", "collect_batch_size", "collect_learning_curves"]


#: A trial "stalled" when its best validation balanced accuracy came within this much of chance (1 / classes).
STALL_MARGIN = 0.02


@dataclass
class BatchSizeStats:
    """Per trial: batch size, learning rate, score, best balanced accuracy, stalled or not; then per batch size."""

    metric: str
    chance: float
    stall_rule: str
    per_trial: pd.DataFrame  # trial_id, batch_size, lr, lr_per_sample, score, best_balanced_acc, stalled
    per_size: pd.DataFrame  # batch_size, trials, stalled, stalled_share, median_score, best_score


def collect_batch_size(run: RunData) -> BatchSizeStats:
    """Score by batch size, and how often each batch size stalled at chance (the majority-class answer).

    Stalled: the trial's best validation balanced accuracy over all its epochs is within :data:`STALL_MARGIN` of
    chance, 1 / number of classes (what a model that always answers one class, e.g. the majority class, scores).
    """
    chance = run.chance
    rule = (
        f"stalled = best val_balanced_acc over all epochs ≤ 1/{len(run.classes)} + {STALL_MARGIN} = "
        f"{chance + STALL_MARGIN:.3f} (a model that always answers one class scores exactly 1/{len(run.classes)})"
    )
    s = run.scored
    t = run.trials
    if s.empty:
        cols = ["trial_id", "batch_size", "lr", "lr_per_sample", "score", "best_balanced_acc", "stalled"]
        empty = pd.DataFrame(columns=cols)
        size_cols = ["batch_size", "trials", "stalled", "stalled_share", "median_score", "best_score"]
        return BatchSizeStats(run.metric, chance, rule, empty, pd.DataFrame(columns=size_cols))
    best_bal = t.groupby("trial_id")["val_balanced_acc"].max() if "val_balanced_acc" in t.columns else None
    per = pd.DataFrame(
        {
            "trial_id": s["trial_id"].astype(str),
            "batch_size": pd.to_numeric(col(s, "config/batch_size"), errors="coerce"),
            "lr": pd.to_numeric(col(s, "config/lr"), errors="coerce"),
            "score": s[run.metric].astype(float),
        }
    )
    per["lr_per_sample"] = per["lr"] / per["batch_size"]
    per["best_balanced_acc"] = per["trial_id"].map(best_bal) if best_bal is not None else np.nan
    per["stalled"] = per["best_balanced_acc"] <= chance + STALL_MARGIN + 1e-9
    per = per.dropna(subset=["batch_size"]).reset_index(drop=True)
    per["batch_size"] = per["batch_size"].astype(int)
    sizes = (
        per.groupby("batch_size")
        .agg(
            trials=("trial_id", "size"),
            stalled=("stalled", "sum"),
            median_score=("score", "median"),
            best_score=("score", "max" if run.mode == "max" else "min"),
        )
        .reset_index()
    )
    sizes["stalled"] = sizes["stalled"].astype(int)
    sizes["stalled_share"] = sizes["stalled"] / sizes["trials"]
    sizes = sizes[["batch_size", "trials", "stalled", "stalled_share", "median_score", "best_score"]]
    return BatchSizeStats(run.metric, chance, rule, per, sizes)


@dataclass
class Curve:
    """One trial's metric per epoch, with the group it is coloured by."""

    trial_id: str
    group: str
    epochs: list[int]
    values: list[float]


def collect_learning_curves(run: RunData, by: str = "batch_size", metric: str | None = None) -> list[Curve]:
    """Per scored trial, ``metric`` (default: the run's) per epoch, grouped by ``config/<by>``; sorted by group."""
    metric = metric or run.metric
    t = run.trials
    if t.empty or metric not in t.columns:
        return []
    curves = []
    for tid, df in t.dropna(subset=[metric]).groupby("trial_id", sort=False):
        df = df.sort_values("epoch")
        group = df[f"config/{by}"].iloc[0] if f"config/{by}" in df.columns else ""
        curves.append(Curve(str(tid), str(plain(group)), [int(e) for e in df["epoch"]], [float(v) for v in df[metric]]))
    return sorted(curves, key=lambda c: (category_key(c.group), c.trial_id))


def _size_colors(sizes: Sequence[object]) -> dict[str, str]:
    return {str(s): PALETTE[i % len(PALETTE)] for i, s in enumerate(sizes)}


def draw_batch_scores(bs: BatchSizeStats) -> go.Figure:
    """Each trial's score at its batch size (stalled trials as crosses), with a box per batch size."""
    per = bs.per_trial
    sizes = sorted(per["batch_size"].unique())
    fig = go.Figure()
    fig.add_trace(
        go.Box(
            name="spread",
            x=[str(s) for s in per["batch_size"]],
            y=list(per["score"]),
            boxpoints=False,
            fillcolor="rgba(0,0,0,0.04)",
            line={"color": "#999"},
        )
    )
    for stalled, name, symbol in ((False, "trial", "circle"), (True, "trial, stalled at chance", "x")):
        sub = per[per["stalled"] == stalled]
        if not sub.empty:
            fig.add_trace(
                go.Scatter(
                    x=[str(s) for s in sub["batch_size"]],
                    y=list(sub["score"]),
                    mode="markers",
                    name=name,
                    marker={"symbol": symbol, "size": 10},
                    text=escs(sub["trial_id"]),
                    hovertemplate="batch %{x}, trial %{text}<br>score %{y:.4f}<extra></extra>",
                )
            )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(s) for s in sizes])
    return layout(fig, f"Best {esc(bs.metric)} by batch size", xaxis_title="batch size", yaxis_title=esc(bs.metric))


def draw_learning_curves(curves: list[Curve], metric: str, by: str = "batch size") -> go.Figure:
    colors = _size_colors(dict.fromkeys(c.group for c in curves))
    fig = go.Figure()
    shown: set[str] = set()
    for c in curves:
        fig.add_trace(
            go.Scatter(
                x=c.epochs,
                y=c.values,
                mode="lines+markers",
                name=f"{by} {esc(c.group)}",
                legendgroup=esc(c.group),
                showlegend=c.group not in shown,
                line={"color": colors[c.group]},
                text=[esc(c.trial_id)] * len(c.epochs),
                hovertemplate=f"{by} {esc(c.group)}, trial %{{text}}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
        shown.add(c.group)
    fig.update_xaxes(dtick=1)
    return layout(
        fig, f"Learning curves coloured by {by}", xaxis_title="epoch", yaxis_title=f"validation {esc(metric)}"
    )


def draw_stalled(bs: BatchSizeStats) -> go.Figure:
    s = bs.per_size
    fig = go.Figure(
        go.Bar(
            x=[str(v) for v in s["batch_size"]],
            y=list(s["stalled_share"]),
            text=[f"{k} of {n}" for k, n in zip(s["stalled"], s["trials"])],
            textposition="outside",
            hovertemplate="batch %{x}: %{text} stalled<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.15], tickformat=".0%")
    return layout(
        fig, "Share of trials that stalled at chance", xaxis_title="batch size", yaxis_title="stalled", height=380
    )


def draw_batch_lr(bs: BatchSizeStats) -> go.Figure:
    per = bs.per_trial
    fig = go.Figure(
        go.Scatter(
            x=list(per["batch_size"]),
            y=list(per["lr"]),
            mode="markers",
            marker={
                "size": 12,
                "color": list(per["score"]),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": esc(bs.metric)},
                "symbol": ["x" if s else "circle" for s in per["stalled"]],
            },
            text=escs(per["trial_id"]),
            customdata=list(per["score"]),
            hovertemplate="trial %{text}<br>batch %{x}, lr %{y:.2e}<br>score %{customdata:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(type="log", title="batch size (log)")
    fig.update_yaxes(type="log", title="learning rate (log)")
    return layout(fig, "Batch size and learning rate (crosses: stalled)")


def draw_lr_per_sample(bs: BatchSizeStats) -> go.Figure:
    per = bs.per_trial
    colors = _size_colors(sorted(per["batch_size"].unique()))
    fig = go.Figure()
    for size in sorted(per["batch_size"].unique()):
        sub = per[per["batch_size"] == size]
        fig.add_trace(
            go.Scatter(
                x=list(sub["lr_per_sample"]),
                y=list(sub["score"]),
                mode="markers",
                name=f"batch {size}",
                marker={"size": 11, "color": colors[str(size)]},
                text=escs(sub["trial_id"]),
                hovertemplate="trial %{text}<br>lr / batch %{x:.2e}<br>score %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", title="learning rate / batch size (log)")
    return layout(
        fig, f"{esc(bs.metric)} against lr / batch size (the linear-scaling rule)", yaxis_title=esc(bs.metric)
    )


def build_page(run: RunData) -> Page:
    page = Page(
        "batch_size.html",
        "Batch size",
        "Does batch size change how well, and how reliably, a trial trains, and does the learning rate have to "
        "scale with it?",
        fed=run.scored_note,
        nothing=f"No trial has reported {run.metric} yet.",
    )
    bs = collect_batch_size(run)
    has = not bs.per_trial.empty
    page.add(
        "Score by batch size",
        f"{run.score_definition} Crosses: trials that stalled at chance.",
        has_data=has,
        figure=lambda: draw_batch_scores(bs),
    )
    rows = [
        {
            "batch size": r.batch_size,
            "trials": r.trials,
            "stalled": r.stalled,
            "stalled share": f"{r.stalled_share:.0%}",
            "median score": r.median_score,
            "best score": r.best_score,
        }
        for r in bs.per_size.itertuples()
    ]
    page.add(
        "Stalled at the majority-class rate",
        f"Rule: {bs.stall_rule}.",
        has_data=has,
        figure=lambda: draw_stalled(bs),
        table=lambda: table(["batch size", "trials", "stalled", "stalled share", "median score", "best score"], rows),
    )
    curves = collect_learning_curves(run)
    page.add(
        "Learning curves by batch size",
        f"Validation {run.metric} per epoch of every scored trial, one colour per batch size.",
        has_data=bool(curves),
        figure=lambda: draw_learning_curves(curves, run.metric),
    )
    page.add(
        "Batch size × learning rate",
        "Each trial at its batch size and learning rate, coloured by score.",
        has_data=has,
        figure=lambda: draw_batch_lr(bs),
    )
    page.add(
        "Learning rate per sample",
        "The linear-scaling rule says the learning rate should grow with the batch size (lr / batch constant): "
        "if it holds, the good trials line up at one lr / batch whatever their batch size.",
        has_data=has,
        figure=lambda: draw_lr_per_sample(bs),
    )
    return page
