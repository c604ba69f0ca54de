"""Step two of every figure: draw a ``go.Figure`` from what ``reports.collect`` gathered, computing nothing new.

Plotly renders a subset of HTML inside labels, legends, tick labels and hover text (``<b>``, ``<br>``, ``<a href>``),
so every string that comes from the data (class names, config values, recipe and trial names) goes through
:func:`esc` before it lands in a figure: it shows as text, never as markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from reports.collect import (
    AshaRungs,
    AugmentEffect,
    BatchSizeStats,
    BestSoFar,
    ClassRecall,
    Confusion,
    Curve,
    FitCurve,
    GroupedScores,
    Importance,
    ParallelCoords,
)

__all__ = [
    "draw_asha",
    "draw_augmentation",
    "draw_batch_scores",
    "draw_best_vs_epochs",
    "draw_best_vs_trials",
    "draw_class_recall",
    "draw_confusion",
    "draw_fit_curves",
    "draw_gap",
    "draw_grouped",
    "draw_importance",
    "draw_learning_curves",
    "draw_lr_per_sample",
    "draw_parallel",
    "draw_stalled",
    "draw_batch_lr",
    "esc",
]

_PALETTE = qualitative.Plotly + qualitative.D3
_HEIGHT = 440


def esc(value: object) -> str:
    """Text from the data, made safe for Plotly labels: ``<``, ``>`` and ``&`` become entities Plotly shows as text."""
    return html.escape(str(value), quote=False)


def _escs(values: Sequence[object]) -> list[str]:
    return [esc(v) for v in values]


def _layout(fig: go.Figure, title: str, height: int = _HEIGHT, **kwargs: object) -> go.Figure:
    margin = {"l": 60, "r": 30, "t": 60, "b": 50} | dict(kwargs.pop("margin", {}))  # type: ignore[arg-type]
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white", height=height, margin=margin, **kwargs)
    return fig


def _fmt(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


# -- Overview ----------------------------------------------------------------------------------------------------


def draw_best_vs_trials(b: BestSoFar) -> go.Figure:
    """Each trial's score in creation order (recipes as diamonds) and the best so far as a step line."""
    fig = go.Figure()
    for is_recipe, name, symbol in ((False, "trial (proposed by TPE)", "circle"), (True, "seed recipe", "diamond")):
        idx = [i for i, r in enumerate(b.trial_is_recipe) if r == is_recipe and b.trial_value[i] is not None]
        if idx:
            fig.add_trace(
                go.Scatter(
                    x=[b.trial_number[i] for i in idx],
                    y=[b.trial_value[i] for i in idx],
                    mode="markers",
                    name=name,
                    marker={"symbol": symbol, "size": 9},
                    text=[esc(b.trial_id[i]) for i in idx],
                    hovertemplate="trial %{x} (%{text})<br>score %{y:.4f}<extra></extra>",
                )
            )
    fig.add_trace(
        go.Scatter(x=b.trial_number, y=b.trial_best, mode="lines", name="best so far", line={"shape": "hv", "width": 3})
    )
    return _layout(
        fig,
        f"Best {esc(b.metric)} so far, by trial",
        xaxis_title="trial (in the order started)",
        yaxis_title=esc(b.metric),
    )


def draw_best_vs_epochs(b: BestSoFar) -> go.Figure:
    """Every epoch's score in the order reported, and the best so far against cumulative epochs trained."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=b.epoch_cumulative,
            y=b.epoch_value,
            mode="markers",
            name="epoch score",
            marker={"size": 7, "color": "#7f7f7f", "opacity": 0.6},
            text=_escs(b.epoch_trial_id),
            hovertemplate="epoch %{x} of the search (trial %{text})<br>score %{y:.4f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=b.epoch_cumulative, y=b.epoch_best, mode="lines", name="best so far", line={"shape": "hv", "width": 3}
        )
    )
    return _layout(
        fig,
        f"Best {esc(b.metric)} so far, by compute",
        xaxis_title="epochs trained, all trials together",
        yaxis_title=esc(b.metric),
    )


def draw_parallel(p: ParallelCoords) -> go.Figure:
    dims = []
    for d in p.dimensions:
        dim: dict[str, object] = {"label": esc(d.label), "values": d.values, "tickformat": ".3~g"}
        if d.ticktext is not None:
            dim |= {"tickvals": d.tickvals, "ticktext": _escs(d.ticktext), "range": [-0.5, len(d.ticktext) - 0.5]}
        dims.append(dim)
    fig = go.Figure(
        go.Parcoords(
            line={"color": p.color, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": esc(p.metric)}},
            dimensions=dims,
            labelangle=-30,
            labelside="bottom",
        )
    )
    return _layout(fig, "Hyperparameters of every scored trial, coloured by score", height=520, margin={"b": 90})


def draw_importance(imp: Importance) -> go.Figure:
    order = list(reversed(range(len(imp.params))))
    fig = go.Figure(
        go.Bar(
            x=[imp.importances[i] for i in order],
            y=[esc(imp.params[i]) for i in order],
            orientation="h",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    return _layout(
        fig,
        f"Hyperparameter importance (fANOVA over {imp.n_trials} finished trials)",
        height=max(300, 60 + 22 * len(imp.params)),
        xaxis_title="share of the score's variance",
    )


def draw_asha(a: AshaRungs) -> go.Figure:
    labels = [f"epoch {r}" + (" (max)" if r == a.max_epochs else "") for r in a.rungs]
    fig = go.Figure(
        go.Bar(
            x=["started", *labels],
            y=[a.started, *a.reached],
            text=[str(a.started), *[str(v) for v in a.reached]],
            textposition="outside",
            hovertemplate="%{x}: %{y} trials<extra></extra>",
        )
    )
    return _layout(fig, "Trials reaching each ASHA rung", yaxis_title="trials", height=380)


# -- Batch size --------------------------------------------------------------------------------------------------


def _size_colors(sizes: Sequence[object]) -> dict[str, str]:
    return {str(s): _PALETTE[i % len(_PALETTE)] for i, s in enumerate(sizes)}


def draw_batch_scores(bs: BatchSizeStats) -> go.Figure:
    """Each trial's score at its batch size (stalled trials as crosses), with a box per batch size."""
    per = bs.per_trial
    sizes = sorted(per["batch_size"].unique())
    fig = go.Figure()
    fig.add_trace(
        go.Box(
            x=[str(s) for s in per["batch_size"]],
            y=list(per["score"]),
            name="spread",
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
                    text=_escs(sub["trial_id"]),
                    hovertemplate="batch %{x}, trial %{text}<br>score %{y:.4f}<extra></extra>",
                )
            )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(s) for s in sizes])
    return _layout(fig, f"Best {esc(bs.metric)} by batch size", xaxis_title="batch size", yaxis_title=esc(bs.metric))


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
    return _layout(
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
    return _layout(
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
            text=_escs(per["trial_id"]),
            customdata=list(per["score"]),
            hovertemplate="trial %{text}<br>batch %{x}, lr %{y:.2e}<br>score %{customdata:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(type="log", title="batch size (log)")
    fig.update_yaxes(type="log", title="learning rate (log)")
    return _layout(fig, "Batch size and learning rate (crosses: stalled)")


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
                text=_escs(sub["trial_id"]),
                hovertemplate="trial %{text}<br>lr / batch %{x:.2e}<br>score %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", title="learning rate / batch size (log)")
    return _layout(
        fig, f"{esc(bs.metric)} against lr / batch size (the linear-scaling rule)", yaxis_title=esc(bs.metric)
    )


# -- Overfitting -------------------------------------------------------------------------------------------------


def draw_fit_curves(curves: list[FitCurve]) -> go.Figure:
    """Accuracy (left) and loss (right) per epoch: training dashed, validation solid; stars at the turn-up epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"), horizontal_spacing=0.08)
    for i, c in enumerate(curves):
        color = _PALETTE[i % len(_PALETTE)]
        label = f"{esc(c.role)} ({esc(c.trial_id)})"
        for col, (train, val) in enumerate(((c.train_acc, c.val_acc), (c.train_loss, c.val_loss)), start=1):
            for values, kind, dash in ((train, "train", "dash"), (val, "validation", "solid")):
                fig.add_trace(
                    go.Scatter(
                        x=c.epochs,
                        y=values,
                        mode="lines+markers",
                        name=f"{label} {kind}",
                        legendgroup=label,
                        showlegend=col == 1,
                        line={"color": color, "dash": dash},
                        hovertemplate=f"{label} {kind}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        if c.turn_epoch is not None:
            k = c.epochs.index(c.turn_epoch)
            fig.add_trace(
                go.Scatter(
                    x=[c.turn_epoch],
                    y=[c.val_loss[k]],
                    mode="markers",
                    name=f"{label}: validation loss turns up",
                    legendgroup=label,
                    marker={"symbol": "star", "size": 16, "color": color, "line": {"width": 1, "color": "black"}},
                    hovertemplate=f"{label}<br>validation loss turns up at epoch %{{x}}<extra></extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title="epoch", dtick=1)
    return _layout(fig, "Training (dashed) against validation (solid)", height=520)


def draw_gap(gap: pd.DataFrame) -> go.Figure:
    """Generalisation gap at each trial's last epoch against augmentation ops on, parameters and epochs trained."""
    fig = make_subplots(
        rows=1,
        cols=3,
        shared_yaxes=True,
        subplot_titles=("augmentation ops on", "model parameters", "epochs trained"),
        horizontal_spacing=0.04,
    )
    hover = [
        f"trial {esc(t)}<br>gap {g:.3f} (train {a:.3f}, val {v:.3f})<br>augmentation: {esc(n)}"
        for t, g, a, v, n in zip(gap["trial_id"], gap["gap"], gap["train_acc"], gap["val_acc"], gap["augment_names"])
    ]
    for col, key in enumerate(("augment_ops", "num_params", "epochs"), start=1):
        fig.add_trace(
            go.Scatter(
                x=list(gap[key]),
                y=list(gap["gap"]),
                mode="markers",
                marker={"size": 10, "color": _PALETTE[col - 1]},
                name=key,
                showlegend=False,
                hovertext=hover,
                hoverinfo="text",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_xaxes(dtick=1, row=1, col=1)
    fig.update_xaxes(dtick=1, row=1, col=3)
    fig.update_yaxes(title="train_acc - val_acc at the last epoch", row=1, col=1)
    fig.add_hline(y=0, line={"color": "#aaa", "dash": "dot"})
    return _layout(fig, "Generalisation gap", height=420)


# -- Resolution and augmentation ---------------------------------------------------------------------------------


def draw_grouped(g: GroupedScores, metric: str) -> go.Figure:
    fig = go.Figure()
    for group, scores, trials in zip(g.groups, g.scores, g.trials):
        fig.add_trace(
            go.Box(
                x=[esc(group)] * len(scores),
                y=scores,
                name=esc(group),
                boxpoints="all",
                jitter=0.3,
                pointpos=0,
                text=_escs(trials),
                hovertemplate=f"{esc(g.factor)} %{{x}}, trial %{{text}}<br>score %{{y:.4f}}<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_xaxes(type="category", title=esc(g.factor))
    return _layout(fig, f"{esc(metric)} by {esc(g.factor)}", yaxis_title=esc(metric), height=380)


def draw_augmentation(effects: list[AugmentEffect], metric: str) -> go.Figure:
    fig = go.Figure()
    for side, color in (("on", "#1f77b4"), ("off", "#bbbbbb")):
        xs: list[str] = []
        ys: list[float] = []
        for e in effects:
            values = e.on if side == "on" else e.off
            xs += [esc(e.rule)] * len(values)
            ys += values
        fig.add_trace(
            go.Box(
                x=xs,
                y=ys,
                name=side,
                boxpoints="all",
                jitter=0.3,
                pointpos=0,
                marker={"color": color},
                line={"color": color if side == "on" else "#777"},
                hovertemplate=f"%{{x}} {side}<br>score %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(boxmode="group")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[esc(e.rule) for e in effects])
    return _layout(fig, f"{esc(metric)} with each augmentation op on and off", yaxis_title=esc(metric))


# -- Per class ---------------------------------------------------------------------------------------------------


def draw_class_recall(cr: ClassRecall) -> go.Figure:
    labels = [f"#{r} {esc(t)}" for r, t in zip(cr.rank, cr.trial_id)]
    fig = go.Figure()
    for j, cls in enumerate(cr.classes):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[row[j] for row in cr.recall],
                name=esc(cls),
                hovertemplate=f"{esc(cls)}: %{{y:.3f}}<br>%{{x}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05], title="validation recall")
    return _layout(fig, "Recall per class, top trials (rank by score, at each trial's best epoch)")


def draw_confusion(c: Confusion) -> go.Figure:
    names = _escs(c.classes)
    share = c.row_share
    text = [[f"{n}<br>{s:.0%}" for n, s in zip(row, srow)] for row, srow in zip(c.counts, share)]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "row share", "tickformat": ".0%"},
            hovertemplate="true %{y}, predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="true class", type="category", scaleanchor="x", constrain="domain")
    fig.update_xaxes(title="predicted class", type="category", side="bottom", constrain="domain")
    return _layout(
        fig,
        f"Confusion matrix of the best trial ({esc(c.trial_id)}, epoch {c.epoch})",
        height=max(420, 180 + 90 * len(c.classes)),
    )
