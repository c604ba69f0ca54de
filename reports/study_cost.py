"""A study's cost page: seconds per epoch and training images per second per level (small batches cost wall time
even when they train well; augmentation costs CPU per image).
"""

from __future__ import annotations

from reports.page import Page, table
from reports.study_figures import draw_intervals
from reports.studydata import INTERVAL_METHOD, StudyData

__all__ = ["build_page"]


def build_page(study: StudyData) -> Page:
    page = Page(
        "cost.html",
        "Time",
        f"What does each {study.factor} level cost in wall time?",
        fed=f"Per trial, the mean over its epochs; then mean and 95% interval over seeds. {INTERVAL_METHOD}",
        nothing="No trial has reported an epoch yet.",
    )
    has = bool(study.groups)
    note = (
        "Measured on the machine the study ran on, with every trial sharing it with the others that ran at the same "
        "time; compare levels with each other, not with another machine."
    )
    page.add(
        "Seconds per epoch",
        note,
        has_data=has,
        figure=lambda: draw_intervals(
            study, [("seconds per epoch", lambda g: g.seconds_per_epoch)], "Seconds per epoch", "seconds"
        ),
    )
    page.add(
        "Training images per second",
        note,
        has_data=has,
        figure=lambda: draw_intervals(
            study, [("images / s", lambda g: g.images_per_s)], "Training images per second", "images / s"
        ),
        table=lambda: table(
            [study.factor, "seeds", "seconds per epoch", "images / s"],
            [
                {
                    study.factor: g.label,
                    "seeds": len(g.seeds),
                    "seconds per epoch": g.seconds_per_epoch.text(".1f"),
                    "images / s": g.images_per_s.text(".1f"),
                }
                for g in study.groups
            ],
        ),
    )
    return page
