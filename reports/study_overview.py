"""A study's index page: what the study varied and held fixed, the seed projects' claims beside the measurement with
their verdicts, and the final and best validation metric per level with 95% intervals.
"""

from __future__ import annotations

import json

from reports.page import Page, table
from reports.study_figures import draw_intervals
from reports.studydata import INTERVAL_METHOD, StudyData

__all__ = ["build_page", "definition_rows", "verdict_rows"]

#: The study command per study name, as a reader would type it.
_COMMANDS = {"batch-size": "python -m search.study batch-size", "augmentation": "python -m search.study augmentation"}


def definition_rows(study: StudyData) -> list[dict[str, object]]:
    """What the study varied, held fixed and repeated, one row per item."""
    rules = [r for r in study.lr_rules if r is not None]
    rows = [
        {"item": "study", "value": f"{study.name} ({_COMMANDS.get(study.name, 'python -m search.study')})"},
        {"item": "varied", "value": f"{study.factor}: {', '.join(study.levels)}"},
    ]
    if rules:
        rows.append({"item": "learning-rate rule", "value": ", ".join(rules)})
    rows += [
        {"item": "seeds per level", "value": ", ".join(map(str, study.seeds)) or "?"},
        {"item": "epochs per trial", "value": f"{study.epochs} (every trial, no early stopping)"},
        {"item": "base config", "value": study.base_source or "?"},
        {"item": "training images", "value": study.train_images if study.train_images is not None else "?"},
        {"item": "classes", "value": ", ".join(study.run.classes)},
        {"item": "held fixed", "value": json.dumps(study.base, sort_keys=True)},
    ]
    return rows


def verdict_rows(study: StudyData) -> list[dict[str, object]]:
    return [
        {"claim": v.claim, "source": v.source, "measured": v.measured, "verdict": v.verdict, "rule": v.rule}
        for v in study.verdicts
    ]


def build_page(study: StudyData) -> Page:
    run = study.run
    page = Page(
        "index.html",
        f"Study: {study.name}",
        f"What does {study.factor} do to a model trained the same number of epochs from the same base config, over "
        "several seeds, and does that confirm what the seed projects reported?",
        fed=f"{len(study.groups)} level(s) × up to {len(study.seeds) or '?'} seed(s), {study.epochs} epochs each.",
        nothing=f"No trial has reported {run.metric} yet.",
    )
    page.add("What the study did", table=lambda: table(["item", "value"], definition_rows(study)))
    page.add(
        "The seed projects' claims, measured",
        "Each claim beside what this study measured and the verdict its rule gives: confirmed, not confirmed, or "
        "not resolved at this number of seeds (the intervals overlap: more seeds would narrow them). "
        + INTERVAL_METHOD,
        has_data=bool(study.verdicts),
        table=lambda: table(["claim", "source", "measured", "verdict", "rule"], verdict_rows(study)),
    )
    has = bool(study.groups)
    page.add(
        f"Effect of {study.factor} on {run.metric}",
        f"Per level: the mean over seeds of {run.metric} at the last epoch (final) and at each seed's best epoch "
        "(best), with 95% intervals. " + INTERVAL_METHOD,
        has_data=has,
        figure=lambda: draw_intervals(
            study,
            [(f"final {run.metric}", lambda g: g.final), (f"best {run.metric}", lambda g: g.best)],
            f"Final and best {run.metric} by {study.factor} (mean, 95% interval over seeds)",
            run.metric,
        ),
        table=lambda: table(
            [study.factor, "seeds", f"final {run.metric}", f"best {run.metric}", "final train_acc", "final val_acc"],
            [
                {
                    study.factor: g.label,
                    "seeds": len(g.seeds),
                    f"final {run.metric}": g.final.text(),
                    f"best {run.metric}": g.best.text(),
                    "final train_acc": g.final_train_acc.text(),
                    "final val_acc": g.final_val_acc.text(),
                }
                for g in study.groups
            ],
        ),
    )
    return page
