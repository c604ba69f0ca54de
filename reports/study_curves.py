"""A study's learning-curve page: the validation metric per level as a mean line with a 95% band over seeds,
against epochs and against optimiser steps, and training against validation accuracy.

Equal epochs are not equal steps: at batch 300 an epoch is a few optimiser steps, at batch 1 it is one per image.
Against steps, a level that only looks stuck because it has taken few steps lines up with the others.
"""

from __future__ import annotations

from reports.page import Page
from reports.study_figures import draw_bands
from reports.studydata import INTERVAL_METHOD, StudyData

__all__ = ["build_page"]


def build_page(study: StudyData) -> Page:
    run = study.run
    page = Page(
        "curves.html",
        "Learning curves",
        f"How fast does each {study.factor} level learn, per epoch and per optimiser step?",
        fed=f"Mean over seeds per level; bands: {INTERVAL_METHOD}",
        nothing=f"No trial has reported {run.metric} yet.",
    )
    has = bool(study.groups)
    chance = f"Chance (always one class) is {study.chance:.3f} balanced accuracy."
    page.add(
        f"Validation {run.metric} against epochs",
        f"Every epoch is one pass over the {study.train_images or '?'} training images. {chance}",
        has_data=has,
        figure=lambda: draw_bands(
            study, lambda g: g.curve, f"Validation {run.metric} per epoch", "epoch", f"validation {run.metric}"
        ),
    )
    page.add(
        f"Validation {run.metric} against optimiser steps",
        "The same curves with the mean cumulative optimiser steps of each epoch on a log axis: a level that is slow "
        "per epoch only because it takes few steps per epoch lines up with the others here.",
        has_data=has,
        figure=lambda: draw_bands(
            study,
            lambda g: g.curve_steps,
            f"Validation {run.metric} per optimiser step",
            "optimiser steps (log)",
            f"validation {run.metric}",
            log_x=True,
        ),
    )
    page.add(
        "Training accuracy against epochs",
        "Training accuracy is measured on augmented images while the model learns; compare with validation accuracy "
        "on the overfitting page.",
        has_data=has,
        figure=lambda: draw_bands(study, lambda g: g.train_acc, "Training accuracy per epoch", "epoch", "train_acc"),
    )
    return page
