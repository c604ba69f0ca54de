"""The resolution and augmentation page: scores by image size, channels and resize policy, and with each
augmentation op on and off; each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import plotly.graph_objects as go

from reports.page import Page, esc, escs, layout, table
from reports.rundata import AUGMENT_OPS, RunData, augment_ops_on, category_key, confounded, equal_training
from runstore.ranking import plain

__all__ = ["AugmentEffect", "GroupedScores", "build_page", "collect_augmentation", "collect_resolution"]


@dataclass
class GroupedScores:
    """Scores of trials grouped by one config value (``groups`` in display order, ``scores`` / ``trials`` per group)."""

    factor: str
    groups: list[str]
    scores: list[list[float]]
    trials: list[list[str]]


def _grouped(run: RunData, factor: str) -> GroupedScores:
    s = run.scored
    col = f"config/{factor}"
    if s.empty or col not in s.columns:
        return GroupedScores(factor, [], [], [])
    text = s[col].map(lambda v: "none" if plain(v) is None else str(plain(v)))
    groups = sorted(text.unique(), key=category_key)
    return GroupedScores(
        factor,
        groups,
        [[float(v) for v in s.loc[text == g, run.metric]] for g in groups],
        [[str(v) for v in s.loc[text == g, "trial_id"]] for g in groups],
    )


def collect_resolution(run: RunData) -> list[GroupedScores]:
    """Scores by image size (ordered by pixel count), channels and resize policy."""
    return [_grouped(run, f) for f in ("image_size", "channels", "resize")]


@dataclass
class AugmentEffect:
    """Scores of trials with one augmentation op on and off."""

    op: str
    rule: str
    on: list[float]
    off: list[float]

    @property
    def difference(self) -> float | None:
        """Mean on minus mean off; None unless both sides have trials."""
        if not self.on or not self.off:
            return None
        return float(np.mean(self.on) - np.mean(self.off))


def collect_augmentation(run: RunData, epoch: int | None = None) -> list[AugmentEffect]:
    """For each op in :data:`AUGMENT_OPS`: the scores of scored trials that had it on, and of those that had it off.

    Scores at each trial's best epoch; with ``epoch``, the metric at that epoch (trials that did not reach it are left
    out), so that trials stopped early are compared with the others after the same amount of training.
    """
    s = run.scored
    ops_on = [set(augment_ops_on(r)) for _, r in s.iterrows()]
    scores = [float(v) for v in s[run.metric]] if not s.empty else []
    if epoch is not None and scores:
        t = run.trials.dropna(subset=[run.metric])
        at = t[t["epoch"].astype(int) == epoch].groupby(t["trial_id"].astype(str))[run.metric].first()
        scores = [float(at.get(str(tid), float("nan"))) for tid in s["trial_id"]]
    return [
        AugmentEffect(
            op,
            rule,
            [v for v, on in zip(scores, ops_on) if op in on and not np.isnan(v)],
            [v for v, on in zip(scores, ops_on) if op not in on and not np.isnan(v)],
        )
        for op, rule in AUGMENT_OPS.items()
    ]


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
                text=escs(trials),
                hovertemplate=f"{esc(g.factor)} %{{x}}, trial %{{text}}<br>score %{{y:.4f}}<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_xaxes(type="category", title=esc(g.factor))
    return layout(fig, f"{esc(metric)} by {esc(g.factor)}", yaxis_title=esc(metric), height=380)


def draw_augmentation(effects: list[AugmentEffect], metric: str, epoch: int = 0) -> go.Figure:
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
    at = f" at epoch {epoch} (equal training)" if epoch else ""
    return layout(fig, f"{esc(metric)}{at} with each augmentation op on and off", yaxis_title=esc(metric))


def build_page(run: RunData) -> Page:
    page = Page(
        "resolution.html",
        "Resolution and augmentation",
        "Do larger images, colour channels, the resize policy, or any single augmentation op raise the score?",
        fed=run.scored_note,
        nothing=f"No trial has reported {run.metric} yet.",
    )
    for g in collect_resolution(run):
        note = f"{run.score_definition} One box per value of {g.factor}"
        note += ", ordered by pixel count." if g.factor == "image_size" else "."
        if len(g.groups) == 1:
            note += f" Every trial in this run used {g.factor} = {g.groups[0]}."
        page.add(f"Score by {g.factor}", note, has_data=bool(g.groups), figure=partial(draw_grouped, g, run.metric))
    page.add("What a search can say about augmentation", confounded("augmentation", "augmentation"))
    columns = ["op", "on when", "trials on", "mean on", "trials off", "mean off", "on − off"]
    equal_epoch, _ = equal_training(run, list(run.scored["trial_id"].astype(str)))
    for epoch in (None, equal_epoch):
        effects = collect_augmentation(run, epoch)
        rows = [
            {
                "op": e.op,
                "on when": e.rule,
                "trials on": len(e.on),
                "mean on": sum(e.on) / len(e.on) if e.on else None,
                "trials off": len(e.off),
                "mean off": sum(e.off) / len(e.off) if e.off else None,
                "on − off": e.difference,
            }
            for e in effects
        ]
        if epoch is not None:
            title = "Each augmentation op on and off, at equal training"
            note = (
                f"{run.metric} of every scored trial at epoch {epoch}, the furthest epoch all of them reached (with "
                "ASHA, the furthest rung every trial reached), so trials ASHA stopped early are compared with the "
                "others after the same amount of training."
            )
        else:
            title = "Each augmentation op on and off"
            note = (
                f"{run.score_definition} Trials differ in more than the one op, and ASHA let some train longer than "
                "others, so a difference here is a hint, not a controlled comparison."
            )
        page.add(
            title,
            note,
            has_data=any(e.on or e.off for e in effects),
            figure=partial(draw_augmentation, effects, run.metric, epoch or 0),
            table=partial(table, columns, rows),
        )
    return page
