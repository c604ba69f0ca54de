"""The per-class page: validation recall per class of the top trials and the best trial's confusion matrix;
each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import plotly.graph_objects as go

from reports.page import Page, esc, escs, layout, table
from reports.rundata import RunData
from runstore.ranking import plain

__all__ = ["ClassRecall", "Confusion", "build_page", "collect_class_recall", "collect_confusion"]


@dataclass
class ClassRecall:
    """Validation recall per class of the top trials, each at its best epoch (``recall[i][j]``: trial i, class j)."""

    classes: list[str]
    trial_id: list[str]
    rank: list[int]
    recall: list[list[float | None]]


def collect_class_recall(run: RunData, top: int = 8) -> ClassRecall:
    s = run.scored.head(top)
    recall = [[plain(r.get(f"val_recall_{c}")) for c in run.classes] for _, r in s.iterrows()]
    return ClassRecall(list(run.classes), [str(t) for t in s["trial_id"]], list(range(1, len(s) + 1)), recall)


@dataclass
class Confusion:
    """The best trial's validation confusion matrix at its best epoch: ``counts[true][predicted]``."""

    trial_id: str
    epoch: int
    classes: list[str]
    counts: list[list[int]]

    @property
    def row_share(self) -> list[list[float]]:
        """Each row divided by its total: recall on the diagonal."""
        return [[c / sum(row) if sum(row) else 0.0 for c in row] for row in self.counts]


def collect_confusion(run: RunData) -> Confusion | None:
    """None when no trial scored or the best epoch carries no (readable) ``val_confusion``."""
    s = run.scored
    if s.empty or "val_confusion" not in s.columns:
        return None
    best = s.iloc[0]
    raw = best.get("val_confusion")
    if not isinstance(raw, str):
        return None
    try:
        counts = json.loads(raw)
    except json.JSONDecodeError:
        return None
    n = len(run.classes)
    if not (isinstance(counts, list) and len(counts) == n and all(isinstance(r, list) and len(r) == n for r in counts)):
        return None
    return Confusion(
        str(best["trial_id"]), int(best["best_epoch"]), list(run.classes), [[int(c) for c in r] for r in counts]
    )


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
    return layout(fig, "Recall per class, top trials (rank by score, at each trial's best epoch)")


def draw_confusion(c: Confusion) -> go.Figure:
    names = escs(c.classes)
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
    return layout(
        fig,
        f"Confusion matrix of the best trial ({esc(c.trial_id)}, epoch {c.epoch})",
        height=max(420, 180 + 90 * len(c.classes)),
    )


def build_page(run: RunData) -> Page:
    cr = collect_class_recall(run)
    page = Page(
        "per_class.html",
        "Per class",
        "Which classes do the best trials get wrong, and is viral pneumonia the hard one?",
        fed=f"The recall figure shows the top {len(cr.trial_id)} of {run.counts.scored} scored trial(s); the confusion "
        "matrix is the best trial's.",
        nothing=f"No trial has reported {run.metric} yet.",
    )
    has = bool(cr.trial_id) and bool(cr.classes)
    rows = [
        {"rank": rank, "trial": tid} | {cls: v for cls, v in zip(cr.classes, rec)}
        for rank, tid, rec in zip(cr.rank, cr.trial_id, cr.recall)
    ]
    page.add(
        "Recall per class, top trials",
        f"Validation recall of each class for the best trials by {run.metric}, each at its best epoch.",
        has_data=has,
        figure=lambda: draw_class_recall(cr),
        table=lambda: table(["rank", "trial", *cr.classes], rows),
    )
    conf = collect_confusion(run)
    if conf is None:
        empty = None if not has else "The best epoch has no confusion matrix."
        page.add("Confusion matrix of the best trial", has_data=False, empty=empty)
        return page
    counts = [{"true \\ predicted": cls} | dict(zip(conf.classes, row)) for cls, row in zip(conf.classes, conf.counts)]
    page.add(
        "Confusion matrix of the best trial",
        f"Trial {conf.trial_id} at epoch {conf.epoch} (its best), on the validation split: rows are the true "
        "class, columns the predicted one; each cell shows the count and its share of the row (recall on the "
        "diagonal).",
        figure=lambda: draw_confusion(conf),
        table=lambda: table(["true \\ predicted", *conf.classes], counts),
    )
    return page
