"""A batch-size study's page on leaving chance: how many epochs, and how many optimiser steps, each level spends
near chance (always answering one class) before it leaves, and how often it stalled by the stated rule.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.page import Page, esc, layout, table
from reports.rundata import STALL_EPOCHS
from reports.study_figures import level_colors
from reports.studydata import StudyData

__all__ = ["build_page", "draw_leaving_chance"]


def draw_leaving_chance(study: StudyData) -> go.Figure:
    """Per seed: epochs near chance (left) and optimiser steps when it left chance (right, log), one dot per seed."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("epochs near chance before leaving", "optimiser steps when it left chance (log)"),
        horizontal_spacing=0.1,
    )
    colors = level_colors(study)
    labels = [esc(g.label) for g in study.groups]
    for g in study.groups:
        x = [esc(g.label)] * len(g.seeds)
        text = [f"seed {s}" for s in g.seeds]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g.near_chance,
                mode="markers",
                name=f"{study.factor} {esc(g.label)}",
                legendgroup=esc(g.label),
                marker={"size": 11, "color": colors[g.label]},
                text=text,
                hovertemplate="%{x}, %{text}: %{y} epochs near chance<extra></extra>",
            ),
            row=1,
            col=1,
        )
        left = [(s, t) for s, t in zip(text, g.steps_to_leave) if not math.isnan(t)]
        fig.add_trace(
            go.Scatter(
                x=[esc(g.label)] * len(left),
                y=[t for _, t in left],
                mode="markers",
                name=f"{study.factor} {esc(g.label)}",
                legendgroup=esc(g.label),
                showlegend=False,
                marker={"size": 11, "color": colors[g.label], "symbol": "diamond"},
                text=[s for s, _ in left],
                hovertemplate="%{x}, %{text}: left chance after %{y:.0f} steps<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels, title=esc(study.factor))
    fig.update_yaxes(type="log", row=1, col=2)
    if study.stall_applies:
        fig.add_hline(y=STALL_EPOCHS - 0.5, line={"color": "#c33", "dash": "dot"}, row=1, col=1)
    return layout(fig, "Leaving chance, per seed", height=440)


def build_page(study: StudyData) -> Page | None:
    """The page of a batch-size study; None for any other study."""
    if study.factor != "batch_size":
        return None
    page = Page(
        "chance.html",
        "Leaving chance",
        "Does a level stay near chance for long, and is that a lack of optimiser steps or of something else?",
        fed=f"One dot per seed; chance = 1/{len(study.run.classes)} balanced accuracy.",
        nothing="No trial has reported an epoch yet.",
    )
    rule = study.stall_rule
    applies = (
        f"The study trained {study.epochs} epochs per trial, so the rule applies."
        if study.stall_applies
        else f"The study trained only {study.epochs} epochs per trial: the rule cannot call any level stalled."
    )
    rows = []
    for g in study.groups:
        left = [t for t in g.steps_to_leave if not math.isnan(t)]
        judged = [s for s in g.stalled if s is not None]
        rows.append(
            {
                study.factor: g.label,
                "seeds": len(g.seeds),
                "epochs near chance (per seed)": ", ".join(map(str, g.near_chance)),
                "steps when it left (per seed)": ", ".join(
                    "never" if math.isnan(t) else f"{t:.0f}" for t in g.steps_to_leave
                ),
                "mean steps when it left": sum(left) / len(left) if left else None,
                "stalled": f"{sum(judged)} of {len(judged)}" if judged else "not judged",
            }
        )
    page.add(
        "Epochs and steps near chance",
        f"A level leaves chance at the first epoch its val_balanced_acc is above chance + margin. Rule: {rule}. "
        f"{applies} Steps: the optimiser steps taken by the end of the epoch it left chance at.",
        has_data=bool(study.groups),
        figure=lambda: draw_leaving_chance(study),
        table=lambda: table(list(rows[0]) if rows else [], rows),
    )
    return page
