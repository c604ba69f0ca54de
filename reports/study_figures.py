"""The figures every study page draws: mean curves with their 95% band, and per-level means with interval bars.

Each level keeps one colour on every page (:func:`level_colors`), so a reader follows batch 35 from page to page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.colors import hex_to_rgb

from reports.page import PALETTE, esc, layout
from reports.studydata import Band, Interval, LevelStats, StudyData

__all__ = ["add_band", "draw_bands", "draw_intervals", "level_colors"]


def level_colors(study: StudyData) -> dict[str, str]:
    """One colour per level (and learning-rate rule), in the study's level order."""
    return {g.label: PALETTE[i % len(PALETTE)] for i, g in enumerate(study.groups)}


def _nan_free(values: Sequence[float]) -> list[float | None]:
    return [None if v is None or math.isnan(v) else v for v in values]


def add_band(fig: go.Figure, band: Band, name: str, color: str, hover: str, dash: str = "solid", **where: int) -> None:
    """The mean line of ``band`` and, where it has an interval (2 or more seeds), a shaded band around it."""
    r, g, b = hex_to_rgb(color) if color.startswith("#") else (120, 120, 120)
    if not all(math.isnan(v) for v in band.low):
        fig.add_trace(
            go.Scatter(
                x=band.x + band.x[::-1],
                y=_nan_free(band.high + band.low[::-1]),
                mode="lines",
                fill="toself",
                fillcolor=f"rgba({r},{g},{b},0.15)",
                line={"width": 0},
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
                name=f"{name} 95% band",
            ),
            **where,
        )
    fig.add_trace(
        go.Scatter(
            x=band.x,
            y=_nan_free(band.mean),
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line={"color": color, "dash": dash},
            hovertemplate=f"{name}<br>{hover}<extra></extra>",
        ),
        **where,
    )


def draw_bands(
    study: StudyData,
    pick: Callable[[LevelStats], Band],
    title: str,
    xaxis: str,
    yaxis: str,
    log_x: bool = False,
    zero_line: bool = False,
) -> go.Figure:
    """One mean curve with its band per level."""
    colors = level_colors(study)
    fig = go.Figure()
    for g in study.groups:
        name = f"{study.factor} {esc(g.label)}"
        add_band(fig, pick(g), name, colors[g.label], f"{esc(xaxis)} %{{x:.4g}}: %{{y:.4f}}")
    if log_x:
        fig.update_xaxes(type="log")
    if zero_line:
        fig.add_hline(y=0, line={"color": "#aaa", "dash": "dot"})
    return layout(fig, title, xaxis_title=esc(xaxis), yaxis_title=esc(yaxis))


def draw_intervals(
    study: StudyData, series: Sequence[tuple[str, Callable[[LevelStats], Interval]]], title: str, yaxis: str
) -> go.Figure:
    """Per level, the mean of each series with its 95% interval as an error bar; levels in the study's order."""
    fig = go.Figure()
    labels = [esc(g.label) for g in study.groups]
    for i, (name, pick) in enumerate(series):
        ivs = [pick(g) for g in study.groups]
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=_nan_free([iv.mean for iv in ivs]),
                mode="markers",
                name=esc(name),
                marker={"size": 11, "color": PALETTE[i % len(PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [0.0 if math.isnan(iv.high) else iv.high - iv.mean for iv in ivs],
                    "arrayminus": [0.0 if math.isnan(iv.low) else iv.mean - iv.low for iv in ivs],
                },
                customdata=[[iv.low, iv.high, iv.n] for iv in ivs],
                hovertemplate=f"{esc(name)}, %{{x}}: %{{y:.4f}}<br>95% interval [%{{customdata[0]:.4f}}, "
                "%{customdata[1]:.4f}] over %{customdata[2]} seeds<extra></extra>",
            )
        )
    fig.update_xaxes(type="category", title=esc(study.factor))
    fig.update_layout(scattermode="group")
    return layout(fig, title, yaxis_title=esc(yaxis))
