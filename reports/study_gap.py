"""A study's overfitting page: the train − validation gap in accuracy and in loss per level over epochs, and the
final gap with its 95% interval over seeds.
"""

from __future__ import annotations

from reports.page import Page, table
from reports.study_figures import draw_bands, draw_intervals
from reports.studydata import INTERVAL_METHOD, StudyData

__all__ = ["build_page"]


def build_page(study: StudyData) -> Page:
    page = Page(
        "gap.html",
        "Overfitting",
        f"Does {study.factor} widen or close the gap between training and validation?",
        fed=f"Mean over seeds per level; bands and intervals: {INTERVAL_METHOD}",
        nothing="No trial has reported an epoch yet.",
    )
    has = bool(study.groups)
    page.add(
        "Accuracy gap over epochs",
        "train_acc − val_acc per epoch (above 0: the model does better on the images it trains on). Training accuracy "
        "is measured on augmented images while the model learns, so a gap below 0 is possible with strong "
        "augmentation.",
        has_data=has,
        figure=lambda: draw_bands(
            study, lambda g: g.gap_acc, "train_acc − val_acc per epoch", "epoch", "accuracy gap", zero_line=True
        ),
    )
    page.add(
        "Loss gap over epochs",
        "val_loss − train_loss per epoch (above 0 and growing: overfitting).",
        has_data=has,
        figure=lambda: draw_bands(
            study, lambda g: g.gap_loss, "val_loss − train_loss per epoch", "epoch", "loss gap", zero_line=True
        ),
    )
    page.add(
        "Final gap per level",
        f"At the last epoch ({study.epochs}): mean over seeds with 95% intervals.",
        has_data=has,
        figure=lambda: draw_intervals(
            study,
            [("train_acc − val_acc", lambda g: g.gap_acc_final), ("val_loss − train_loss", lambda g: g.gap_loss_final)],
            "Final generalisation gap (mean, 95% interval over seeds)",
            "gap",
        ),
        table=lambda: table(
            [study.factor, "seeds", "train_acc − val_acc", "val_loss − train_loss", "final train_acc", "final val_acc"],
            [
                {
                    study.factor: g.label,
                    "seeds": len(g.seeds),
                    "train_acc − val_acc": g.gap_acc_final.text(),
                    "val_loss − train_loss": g.gap_loss_final.text(),
                    "final train_acc": g.final_train_acc.text(),
                    "final val_acc": g.final_val_acc.text(),
                }
                for g in study.groups
            ],
        ),
    )
    return page
