"""The report's pages: which figures and tables each one holds, and the HTML around them.

Every page answers one question the seed projects asked, names the run, links to the others, and says in small
type how many trials fed it. Text from the data is HTML-escaped wherever it lands; figure JSON embedded in a
``<script>`` has ``<``, ``>`` and ``&`` written as ``\\u003c``-style escapes, so no value can close the script tag.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from reports import collect as c
from reports import figures as f

__all__ = ["PLOTLY_JS", "Page", "Section", "build_pages", "render_page"]

#: plotly.js is written once next to the pages under this name and loaded from there: no network needed.
PLOTLY_JS = "plotly.min.js"


@dataclass
class Section:
    """A heading, a note, then a figure, or ready-made (already escaped) HTML, or a message saying why neither."""

    title: str
    note: str = ""
    figure: go.Figure | None = None
    html: str = ""
    empty: str = ""


@dataclass
class Page:
    filename: str
    title: str
    question: str
    sections: list[Section] = field(default_factory=list)
    fed: str = ""  # the small-print note: which trials this page shows


# -- HTML helpers ------------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    """A table cell's text: floats to 4 significant places (small ones in scientific notation), None as blank."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _breakable(text: str) -> str:
    """Escaped text with line-break opportunities after ``_``, ``@`` and ``+`` (long names and recipes wrap)."""
    escaped = _e(text)
    for ch in "_@+":
        escaped = escaped.replace(ch, ch + "<wbr>")
    return escaped


def table(
    columns: Sequence[str], rows: Sequence[dict[str, Any]], row_class: Callable[[dict], str] | None = None
) -> str:
    """An HTML table; every heading and cell escaped."""
    head = "".join(f"<th>{_breakable(col)}</th>" for col in columns)
    body = []
    for row in rows:
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f"<td{' class=num' if isinstance(v, (int, float)) else ''}>{_breakable(_cell(v))}</td>"
            for v in (row.get(col) for col in columns)
        )
        body.append(f'<tr class="{_e(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def script_json(fig: go.Figure) -> str:
    """The figure as JSON that is safe inside ``<script>``: no ``<``, ``>``, ``&`` or JS line separators left raw."""
    text = pio.to_json(fig, validate=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
  background: #fafafa; }
nav { background: #1f2d3d; padding: 0 24px; display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
nav a { color: #d8e2ec; text-decoration: none; padding: 12px 14px; display: inline-block; font-size: 15px; }
nav a.current { color: #fff; background: #3a4f66; font-weight: 600; }
nav .run { color: #9fb3c8; margin-left: auto; font-size: 13px; padding: 12px 0; }
main { max-width: 1320px; margin: 0 auto; padding: 8px 24px 24px; }
h1 { font-size: 26px; margin: 18px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 6px; }
.question { font-size: 16px; color: #444; margin: 4px 0 10px; }
.runline { font-size: 13px; color: #666; margin: 0; }
.banner { background: #fff4d6; border: 1px solid #e8c766; padding: 8px 12px; border-radius: 4px; margin: 10px 0; }
.note { color: #444; font-size: 14px; margin: 4px 0 8px; max-width: 1100px; }
.empty { color: #8a5a00; font-style: italic; }
.plot { background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; margin: 6px 0 10px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; background: #fff; margin: 6px 0 10px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
td.num { white-space: nowrap; }
th { background: #eef2f6; }
tr.recipe td { background: #f1f7ec; }
tr.recipe td:nth-child(3) { font-weight: 600; }
footer { max-width: 1320px; margin: 0 auto; padding: 10px 24px 30px; font-size: 12px; color: #777; }
""".strip()


def render_page(page: Page, pages: Sequence[Page], run: c.RunData) -> str:
    """One page as a complete HTML document that loads plotly.js from the file beside it."""
    nav = "".join(
        f'<a href="{_e(p.filename)}"{" class=current" if p.filename == page.filename else ""}>{_e(p.title)}</a>'
        for p in pages
    )
    status = "finished" if run.finished else "not finished"
    runline = (
        f"Run <b>{_e(run.name)}</b> · space {_e(run.info.get('space', '?'))} · metric {_e(run.metric)} "
        f"({_e(run.mode)}imised) · {status} · {_e(run.run_dir)}"
    )
    banner = ""
    if not run.finished:
        banner = (
            '<p class="banner">This run has not finished (<code>finished: false</code> in run.json): '
            f"the pages show it as far as it got; {run.counts.running} trial(s) still running.</p>"
        )
    if run.counts.total == 0:
        banner += '<p class="banner">No trial has started yet: there is nothing to plot.</p>'
    elif run.counts.scored == 0:
        banner += f'<p class="banner">No trial has reported {_e(run.metric)} yet: there is nothing to plot.</p>'
    parts = []
    for i, s in enumerate(page.sections):
        parts.append(f"<section><h2>{_e(s.title)}</h2>")
        if s.note:
            parts.append(f'<p class="note">{_e(s.note)}</p>')
        if s.figure is not None:
            div = f"fig-{i}"
            parts.append(f'<div id="{div}" class="plot"></div>')
            parts.append(
                f'<script>(function(){{var f={script_json(s.figure)};Plotly.newPlot("{div}",f.data,f.layout,'
                "{responsive:true,displaylogo:false});})();</script>"
            )
        if s.html:
            parts.append(s.html)
        if s.empty:
            parts.append(f'<p class="note empty">{_e(s.empty)}</p>')
        parts.append("</section>")
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(page.title)} · {_e(run.name)} · cxr-search report</title>
<style>
{_CSS}
</style>
<script src="{PLOTLY_JS}" charset="utf-8"></script>
</head>
<body>
<nav>{nav}<span class="run">{_e(run.name)}</span></nav>
<main>
<h1>{_e(page.title)}</h1>
<p class="question">{_e(page.question)}</p>
<p class="runline">{runline}</p>
{banner}
{body}
</main>
<footer>Trials in this run: {_e(run.counts.describe())}. {_e(page.fed)}</footer>
</body>
</html>
"""


# -- the pages ---------------------------------------------------------------------------------------------------


def _scored_note(run: c.RunData) -> str:
    return f"The figures on this page use the {run.counts.scored} trial(s) that reported {run.metric}."


def _score_def(run: c.RunData) -> str:
    return f"A trial's score is its {run.metric} at its best epoch."


def overview(run: c.RunData) -> Page:
    page = Page(
        "index.html",
        "Overview",
        "Which configurations won, how fast did the search find them, which hyperparameters mattered, "
        "and how much training did ASHA save?",
        fed=_scored_note(run),
    )
    nothing = f"No trial has reported {run.metric} yet."
    lb = c.collect_leaderboard(run)
    page.sections.append(
        Section(
            "Leaderboard",
            f"The {min(10, run.counts.scored)} best trials and every seed recipe (shaded), ranked by {run.metric} "
            "at each trial's best epoch; config columns are what the trial trained with.",
            html=table(lb.columns, lb.rows, lambda r: "recipe" if r.get("recipe") else "") if lb.rows else "",
            empty="" if lb.rows else nothing,
        )
    )
    failed = c.collect_failures(run)
    if not failed.empty:
        page.sections.append(
            Section(
                "Failed trials",
                "Trials that ended with an error, and the last line of the error.",
                html=table(
                    ["trial", "order", "recipe", "model", "epochs done", "error"],
                    [
                        {"trial": r.trial_id, "order": r.order, "recipe": r.recipe, "model": r.model}
                        | {"epochs done": r.epochs_done, "error": r.error}
                        for r in failed.itertuples()
                    ],
                ),
            )
        )
    best = c.collect_best_so_far(run)
    has = bool(best.epoch_value)
    page.sections.append(
        Section(
            "Best so far, by trial",
            f"{_score_def(run)} Trials in the order they started; the seed recipes start first.",
            figure=f.draw_best_vs_trials(best) if has else None,
            empty="" if has else nothing,
        )
    )
    page.sections.append(
        Section(
            "Best so far, by compute",
            "Every epoch any trial trained, in the order they were reported, and the best epoch score so far: "
            "what a longer or shorter search would have found.",
            figure=f.draw_best_vs_epochs(best) if has else None,
            empty="" if has else nothing,
        )
    )
    imp = c.collect_importance(run)
    par = c.collect_parallel(run, params=imp.params or None)
    note = (
        "One line per scored trial across the hyperparameters that varied (the most important first when the "
        f"importance below is known; at most 12 axes), coloured by score. {_score_def(run)}"
    )
    if par.left_out:
        note += f" Not drawn (set for some models only, or past 12 axes): {', '.join(par.left_out)}."
    page.sections.append(
        Section(
            "Parallel coordinates",
            note,
            figure=f.draw_parallel(par) if par.trial_id else None,
            empty="" if par.trial_id else nothing,
        )
    )
    note = (
        "fANOVA (Optuna's FanovaImportanceEvaluator, seed 0) over the Optuna study: how much of the variance of the "
        "value each trial reported to Optuna (the metric at its last epoch, what TPE learnt from) each "
        "hyperparameter explains. Ranges that depend on another choice (the learning rate's on the optimizer) "
        "are widened to their union."
    )
    if imp.left_out:
        note += f" Left out (not set in every trial): {', '.join(imp.left_out)}."
    page.sections.append(
        Section(
            "Hyperparameter importance",
            note,
            figure=f.draw_importance(imp) if imp.reason is None else None,
            empty=f"Importance not available: {imp.reason}." if imp.reason else "",
        )
    )
    asha = c.collect_asha(run)
    if asha.scheduler != "asha":
        page.sections.append(
            Section(
                "ASHA",
                empty=f"This run used the {asha.scheduler} scheduler: every trial trains to the end, nothing to save.",
            )
        )
    elif asha.started == 0:
        page.sections.append(Section("ASHA", empty="No trial has ended yet."))
    else:
        share = asha.epochs_saved / asha.epochs_without_stopping if asha.epochs_without_stopping else 0.0
        page.sections.append(
            Section(
                "ASHA: trials reaching each rung",
                f"Rungs at grace period {asha.grace_period} × reduction factor {asha.reduction_factor}^k below "
                f"{asha.max_epochs} epochs, then the end; at each rung trials were compared on "
                f"{asha.rung_metric}. {asha.started} trials ended (completed or stopped early; "
                f"stopped includes the time budget) and trained {asha.epochs_trained} epochs; all of them to "
                f"{asha.max_epochs} epochs would have been {asha.epochs_without_stopping}: ASHA saved "
                f"{asha.epochs_saved} epochs ({share:.0%})."
                + (f" {asha.left_out} failed or running trial(s) are not counted." if asha.left_out else ""),
                figure=f.draw_asha(asha),
            )
        )
    return page


def batch_size(run: c.RunData) -> Page:
    page = Page(
        "batch_size.html",
        "Batch size",
        "Does batch size change how well, and how reliably, a trial trains, and does the learning rate have to "
        "scale with it?",
        fed=_scored_note(run),
    )
    bs = c.collect_batch_size(run)
    nothing = f"No trial has reported {run.metric} yet."
    has = not bs.per_trial.empty
    page.sections.append(
        Section(
            "Score by batch size",
            f"{_score_def(run)} Crosses: trials that stalled at chance.",
            figure=f.draw_batch_scores(bs) if has else None,
            empty="" if has else nothing,
        )
    )
    rows = [
        {
            "batch size": r.batch_size,
            "trials": r.trials,
            "stalled": r.stalled,
            "stalled share": f"{r.stalled_share:.0%}",
            "median score": r.median_score,
            "best score": r.best_score,
        }
        for r in bs.per_size.itertuples()
    ]
    page.sections.append(
        Section(
            "Stalled at the majority-class rate",
            f"Rule: {bs.stall_rule}.",
            figure=f.draw_stalled(bs) if has else None,
            html=table(["batch size", "trials", "stalled", "stalled share", "median score", "best score"], rows)
            if rows
            else "",
            empty="" if has else nothing,
        )
    )
    curves = c.collect_learning_curves(run)
    page.sections.append(
        Section(
            "Learning curves by batch size",
            f"Validation {run.metric} per epoch of every scored trial, one colour per batch size.",
            figure=f.draw_learning_curves(curves, run.metric) if curves else None,
            empty="" if curves else nothing,
        )
    )
    page.sections.append(
        Section(
            "Batch size × learning rate",
            "Each trial at its batch size and learning rate, coloured by score.",
            figure=f.draw_batch_lr(bs) if has else None,
            empty="" if has else nothing,
        )
    )
    page.sections.append(
        Section(
            "Learning rate per sample",
            "The linear-scaling rule says the learning rate should grow with the batch size (lr / batch constant): "
            "if it holds, the good trials line up at one lr / batch whatever their batch size.",
            figure=f.draw_lr_per_sample(bs) if has else None,
            empty="" if has else nothing,
        )
    )
    return page


def overfitting(run: c.RunData) -> Page:
    curves = c.collect_fit_curves(run)
    gap = c.collect_gap(run)
    page = Page(
        "overfitting.html",
        "Overfitting",
        "When do trials start to overfit, and does augmentation, model size or training longer widen the gap "
        "between training and validation?",
        fed=f"The curves show {len(curves)} chosen trial(s); the gap uses the {len(gap)} trial(s) that reported "
        "training and validation accuracy.",
    )
    nothing = "No trial has reported an epoch yet."
    rule = (
        "Turn-up epoch: the first epoch whose validation loss is above the lowest it has been while the training "
        "loss reaches a new low (marked with a star)."
    )
    page.sections.append(
        Section(
            "Training against validation, chosen trials",
            "The best trial, the worst trial that trained at least two epochs, and every seed recipe. " + rule,
            figure=f.draw_fit_curves(curves) if curves else None,
            html=table(
                ["trial", "role", "epochs", "turn-up epoch", "last train_acc", "last val_acc"],
                [
                    {
                        "trial": cv.trial_id,
                        "role": cv.role,
                        "epochs": len(cv.epochs),
                        "turn-up epoch": cv.turn_epoch if cv.turn_epoch is not None else "none",
                        "last train_acc": cv.train_acc[-1],
                        "last val_acc": cv.val_acc[-1],
                    }
                    for cv in curves
                ],
            )
            if curves
            else "",
            empty="" if curves else nothing,
        )
    )
    page.sections.append(
        Section(
            "Generalisation gap",
            "train_acc − val_acc at each trial's last epoch, against the number of augmentation ops on "
            f"({', '.join(c.AUGMENT_OPS.values())}), the model's parameter count and the epochs it trained. "
            "Training accuracy is measured on augmented images while the model is still learning, so a negative gap "
            "is possible.",
            figure=f.draw_gap(gap) if not gap.empty else None,
            empty="" if not gap.empty else nothing,
        )
    )
    turned = gap.dropna(subset=["turn_epoch"]) if not gap.empty else gap
    page.sections.append(
        Section(
            "Turn-up epoch of every trial",
            rule + f" {len(turned)} of {len(gap)} trial(s) turned up.",
            html=table(
                ["trial", "epochs", "turn-up epoch", "gap", "augmentation"],
                [
                    {
                        "trial": r.trial_id,
                        "epochs": r.epochs,
                        "turn-up epoch": "none" if pd.isna(r.turn_epoch) else int(r.turn_epoch),
                        "gap": r.gap,
                        "augmentation": r.augment_names,
                    }
                    for r in gap.itertuples()
                ],
            )
            if not gap.empty
            else "",
            empty="" if not gap.empty else nothing,
        )
    )
    return page


def resolution(run: c.RunData) -> Page:
    page = Page(
        "resolution.html",
        "Resolution and augmentation",
        "Do larger images, colour channels, the resize policy, or any single augmentation op raise the score?",
        fed=_scored_note(run),
    )
    nothing = f"No trial has reported {run.metric} yet."
    for g in c.collect_resolution(run):
        note = f"{_score_def(run)} One box per value of {g.factor}"
        note += ", ordered by pixel count." if g.factor == "image_size" else "."
        if len(g.groups) == 1:
            note += f" Every trial in this run used {g.factor} = {g.groups[0]}."
        page.sections.append(
            Section(
                f"Score by {g.factor}",
                note,
                figure=f.draw_grouped(g, run.metric) if g.groups else None,
                empty="" if g.groups else nothing,
            )
        )
    effects = c.collect_augmentation(run)
    has = any(e.on or e.off for e in effects)
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
    page.sections.append(
        Section(
            "Each augmentation op on and off",
            f"{_score_def(run)} Trials differ in more than the one op, so a difference here is a hint, not a "
            "controlled comparison.",
            figure=f.draw_augmentation(effects, run.metric) if has else None,
            html=table(["op", "on when", "trials on", "mean on", "trials off", "mean off", "on − off"], rows)
            if has
            else "",
            empty="" if has else nothing,
        )
    )
    return page


def per_class(run: c.RunData) -> Page:
    cr = c.collect_class_recall(run)
    conf = c.collect_confusion(run)
    page = Page(
        "per_class.html",
        "Per class",
        "Which classes do the best trials get wrong, and is viral pneumonia the hard one?",
        fed=f"The recall figure shows the top {len(cr.trial_id)} of {run.counts.scored} scored trial(s); the confusion "
        "matrix is the best trial's.",
    )
    nothing = f"No trial has reported {run.metric} yet."
    has = bool(cr.trial_id) and bool(cr.classes)
    rows = [
        {"rank": rank, "trial": tid} | {cls: v for cls, v in zip(cr.classes, rec)}
        for rank, tid, rec in zip(cr.rank, cr.trial_id, cr.recall)
    ]
    page.sections.append(
        Section(
            "Recall per class, top trials",
            f"Validation recall of each class for the best trials by {run.metric}, each at its best epoch.",
            figure=f.draw_class_recall(cr) if has else None,
            html=table(["rank", "trial", *cr.classes], rows) if has else "",
            empty="" if has else nothing,
        )
    )
    if conf is not None:
        rows = [
            {"true \\ predicted": cls} | dict(zip(conf.classes, row)) for cls, row in zip(conf.classes, conf.counts)
        ]
        page.sections.append(
            Section(
                "Confusion matrix of the best trial",
                f"Trial {conf.trial_id} at epoch {conf.epoch} (its best), on the validation split: rows are the true "
                "class, columns the predicted one; each cell shows the count and its share of the row (recall on the "
                "diagonal).",
                figure=f.draw_confusion(conf),
                html=table(["true \\ predicted", *conf.classes], rows),
            )
        )
    else:
        page.sections.append(
            Section(
                "Confusion matrix of the best trial",
                empty=nothing if not has else "The best epoch has no confusion matrix.",
            )
        )
    return page


def build_pages(run: c.RunData) -> list[Page]:
    """All pages, in nav order; the first is the index."""
    return [overview(run), batch_size(run), overfitting(run), resolution(run), per_class(run)]
