"""The batch size page: score and stalls by batch size, learning curves by batch size, batch size against
learning rate; each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from reports.page import PALETTE, Page, esc, escs, layout, table
from reports.rundata import (
    STALL_EPOCHS,
    STALL_MARGIN,
    RunData,
    category_key,
    col,
    confounded,
    equal_training,
    stall_rule,
    stalled,
)
from runstore.ranking import plain

__all__ = [
    "BatchSizeStats",
    "CONFOUNDED",
    "Curve",
    "STALL_EPOCHS",
    "STALL_MARGIN",
    "build_page",
    "collect_batch_size",
    "collect_learning_curves",
]

#: What a search can and cannot say about batch size, and the study that answers it.
CONFOUNDED = confounded("batch size", "batch-size")

_OUTCOMES = ("trained", "stopped early", "stalled")


@dataclass
class BatchSizeStats:
    """Per trial: batch size, learning rate, score, outcome (trained, stopped early, stalled); then per batch size.

    ``equal_epoch``: the furthest epoch every scored trial reached; ``score_equal`` is each trial's metric there.
    """

    metric: str
    chance: float
    stall_rule: str
    equal_epoch: int
    per_trial: pd.DataFrame  # trial_id, batch_size, lr, lr_per_sample, score, score_equal, epochs, outcome, stalled
    per_size: pd.DataFrame  # batch_size, trials, stopped_early, judged, stalled, stalled_share, scores (see below)


_TRIAL_COLS = ["trial_id", "batch_size", "lr", "lr_per_sample", "score", "score_equal", "epochs", "outcome", "stalled"]
_SIZE_COLS = [
    "batch_size",
    "trials",
    "stopped_early",
    "judged",
    "stalled",
    "stalled_share",
    "median_score",
    "best_score",
    "median_equal",
]


def collect_batch_size(run: RunData) -> BatchSizeStats:
    """Score by batch size at the best epoch and at equal training, and how often each batch size stalled.

    Outcome per trial: "stalled" when :func:`reports.rundata.stalled` says so (needs :data:`STALL_EPOCHS` epochs);
    else "stopped early" when ASHA stopped it; else "trained". A trial ASHA stopped before :data:`STALL_EPOCHS`
    epochs is therefore never "stalled": at its first rung many trials still answer one class.
    """
    chance = run.chance
    rule = stall_rule(len(run.classes))
    s = run.scored
    t = run.trials
    if s.empty:
        return BatchSizeStats(
            run.metric, chance, rule, 0, pd.DataFrame(columns=_TRIAL_COLS), pd.DataFrame(columns=_SIZE_COLS)
        )
    ids = s["trial_id"].astype(str)
    equal_epoch, at_equal = equal_training(run, list(ids))
    per = pd.DataFrame(
        {
            "trial_id": ids,
            "batch_size": pd.to_numeric(col(s, "config/batch_size"), errors="coerce"),
            "lr": pd.to_numeric(col(s, "config/lr"), errors="coerce"),
            "score": s[run.metric].astype(float),
            "status": col(s, "status").astype(str),
        }
    )
    per["lr_per_sample"] = per["lr"] / per["batch_size"]
    per["score_equal"] = per["trial_id"].map(at_equal)
    curves = (
        {
            str(tid): [float(v) for v in df.sort_values("epoch")["val_balanced_acc"]]
            for tid, df in t.dropna(subset=["val_balanced_acc"]).groupby("trial_id")
        }
        if "val_balanced_acc" in t.columns
        else {}
    )
    per["epochs"] = [len(curves.get(tid, [])) for tid in per["trial_id"]]
    per["stalled"] = [bool(stalled(curves.get(tid, []), chance)) for tid in per["trial_id"]]
    per["outcome"] = [
        "stalled" if st else "stopped early" if status == "STOPPED" else "trained"
        for st, status in zip(per["stalled"], per["status"])
    ]
    per["judged"] = per["epochs"] >= STALL_EPOCHS
    per = per.dropna(subset=["batch_size"]).reset_index(drop=True)
    per["batch_size"] = per["batch_size"].astype(int)
    sizes = (
        per.groupby("batch_size")
        .agg(
            trials=("trial_id", "size"),
            stopped_early=("outcome", lambda o: int((o == "stopped early").sum())),
            judged=("judged", "sum"),
            stalled=("stalled", "sum"),
            median_score=("score", "median"),
            best_score=("score", "max" if run.mode == "max" else "min"),
            median_equal=("score_equal", "median"),
        )
        .reset_index()
    )
    sizes[["judged", "stalled"]] = sizes[["judged", "stalled"]].astype(int)
    sizes["stalled_share"] = (sizes["stalled"] / sizes["judged"]).where(sizes["judged"] > 0)
    return BatchSizeStats(run.metric, chance, rule, equal_epoch, per[_TRIAL_COLS], sizes[_SIZE_COLS])


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


#: Marker per trial outcome: stopped-early trials have their own, so they are never read as stalled.
_MARKERS = {"trained": "circle", "stopped early": "triangle-down-open", "stalled": "x"}


def draw_batch_scores(bs: BatchSizeStats, equal: bool = False) -> go.Figure:
    """Each trial's score (or its score at the equal-training epoch) at its batch size, one marker per outcome,
    with a box per batch size."""
    per = bs.per_trial.dropna(subset=["score_equal"]) if equal else bs.per_trial
    y = "score_equal" if equal else "score"
    sizes = sorted(bs.per_trial["batch_size"].unique())
    fig = go.Figure()
    fig.add_trace(
        go.Box(
            name="spread",
            x=[str(s) for s in per["batch_size"]],
            y=list(per[y]),
            boxpoints=False,
            fillcolor="rgba(0,0,0,0.04)",
            line={"color": "#999"},
        )
    )
    for outcome in _OUTCOMES:
        sub = per[per["outcome"] == outcome]
        if not sub.empty:
            fig.add_trace(
                go.Scatter(
                    x=[str(s) for s in sub["batch_size"]],
                    y=list(sub[y]),
                    mode="markers",
                    name=f"trial, {outcome}",
                    marker={"symbol": _MARKERS[outcome], "size": 10},
                    text=escs(sub["trial_id"]),
                    customdata=list(sub["epochs"]),
                    hovertemplate=f"batch %{{x}}, trial %{{text}} ({outcome}, %{{customdata}} epochs)"
                    "<br>score %{y:.4f}<extra></extra>",
                )
            )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(s) for s in sizes])
    title = (
        f"{esc(bs.metric)} at epoch {bs.equal_epoch} (equal training) by batch size"
        if equal
        else f"Best {esc(bs.metric)} by batch size"
    )
    return layout(fig, title, xaxis_title="batch size", yaxis_title=esc(bs.metric))


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
    """Share of the trials long enough to judge (at least STALL_EPOCHS epochs) that stalled, per batch size."""
    s = bs.per_size[bs.per_size["judged"] > 0]
    fig = go.Figure(
        go.Bar(
            x=[str(v) for v in s["batch_size"]],
            y=list(s["stalled_share"]),
            text=[f"{k} of {n}" for k, n in zip(s["stalled"], s["judged"])],
            textposition="outside",
            hovertemplate="batch %{x}: %{text} stalled<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.15], tickformat=".0%")
    return layout(
        fig,
        f"Share of trials that stalled at chance (of those that trained at least {STALL_EPOCHS} epochs)",
        xaxis_title="batch size",
        yaxis_title="stalled",
        height=380,
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
                "symbol": [_MARKERS[o] for o in per["outcome"]],
            },
            text=escs(per["trial_id"]),
            customdata=list(per["score"]),
            hovertemplate="trial %{text}<br>batch %{x}, lr %{y:.2e}<br>score %{customdata:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(type="log", title="batch size (log)")
    fig.update_yaxes(type="log", title="learning rate (log)")
    return layout(fig, "Batch size and learning rate (crosses: stalled; open triangles: stopped early)")


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
    markers = "Circles: trials that trained; open triangles: trials ASHA stopped early; crosses: trials that stalled."
    page.add("What a search can say about batch size", CONFOUNDED)
    page.add(
        "Score by batch size",
        f"{run.score_definition} {markers} Trials ASHA stopped early had less training than the others; the next "
        "figure compares every trial at the same epoch.",
        has_data=has,
        figure=lambda: draw_batch_scores(bs),
    )
    page.add(
        "Score at equal training",
        f"{run.metric} of every scored trial at epoch {bs.equal_epoch}, the furthest epoch all of them reached "
        "(with ASHA, the furthest rung every trial reached): each has seen the same number of training images there. "
        + markers,
        has_data=has and bs.equal_epoch > 0,
        figure=lambda: draw_batch_scores(bs, equal=True),
    )
    rows = [
        {
            "batch size": r.batch_size,
            "trials": r.trials,
            "stopped early": r.stopped_early,
            f"trained ≥ {STALL_EPOCHS} epochs": r.judged,
            "stalled": r.stalled,
            "stalled share": "" if pd.isna(r.stalled_share) else f"{r.stalled_share:.0%}",
            "median score": r.median_score,
            "best score": r.best_score,
            f"median at epoch {bs.equal_epoch}": r.median_equal,
        }
        for r in bs.per_size.itertuples()
    ]
    columns = list(rows[0]) if rows else []
    judged = int(bs.per_size["judged"].sum()) if has else 0
    page.add(
        "Stalled at the majority-class rate",
        f"Rule: {bs.stall_rule}. {judged} trial(s) trained long enough to be judged.",
        has_data=has,
        figure=(lambda: draw_stalled(bs)) if judged else None,
        table=lambda: table(columns, rows),
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
