"""The overview page: the leaderboard, failed trials, best score so far, parallel coordinates, hyperparameter
importance and what ASHA saved; each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.page import Page, esc, escs, layout, table
from reports.rundata import RunData, augment_ops_on, category_key, col
from runstore.layout import STUDY_FILE
from runstore.ranking import LOSSES_ATTR, counting_epoch, leaderboard, plain

__all__ = [
    "AshaRungs",
    "BestSoFar",
    "Importance",
    "Leaderboard",
    "ParallelCoords",
    "ParallelDimension",
    "asha_rungs",
    "build_page",
    "collect_asha",
    "collect_best_so_far",
    "collect_failures",
    "collect_importance",
    "collect_leaderboard",
    "collect_parallel",
]

#: Leaderboard columns: (heading, summary column). Config first, then the scores.
LEADERBOARD_CONFIG = [
    ("model", "config/model"),
    ("optimizer", "config/optimizer"),
    ("lr", "config/lr"),
    ("weight decay", "config/weight_decay"),
    ("schedule", "config/schedule"),
    ("batch", "config/batch_size"),
    ("image size", "config/image_size"),
    ("dropout", "config/dropout"),
]


@dataclass
class Leaderboard:
    """The best trials plus every seed recipe (however they did), best first; ``rows`` are plain dicts."""

    metric: str
    columns: list[str]
    rows: list[dict[str, Any]]


def collect_leaderboard(run: RunData, top: int = 10) -> Leaderboard:
    """Top ``top`` scored trials by the run's metric, and every seed recipe wherever it ranked
    (``runstore.ranking.leaderboard``)."""
    columns = ["rank", "trial", "recipe", "status", run.metric, "best epoch / epochs", "val_acc", "val_auroc"]
    columns += [h for h, _ in LEADERBOARD_CONFIG] + ["augmentation"]
    rows = []
    for _, r in leaderboard(run.scored, top).iterrows():
        row: dict[str, Any] = {
            "rank": int(r["rank"]),
            "trial": str(r["trial_id"]),
            "recipe": str(r.get("config/recipe") or "") if r["is_recipe"] else "",
            "status": str(r["status"]),
            run.metric: plain(r[run.metric]),
            "best epoch / epochs": f"{int(r['best_epoch'])} / {int(r['epochs_done'])}",
            "val_acc": plain(r.get("val_acc")),
            "val_auroc": plain(r.get("val_auroc")),
        }
        for heading, column in LEADERBOARD_CONFIG:
            row[heading] = plain(r.get(column))
        row["augmentation"] = ", ".join(augment_ops_on(r)) or "none"
        rows.append(row)
    return Leaderboard(run.metric, columns, rows)


def collect_failures(run: RunData) -> pd.DataFrame:
    """Trials that ended in an error: trial, order, recipe, model, epochs done and the error's last line."""
    t = run.trials
    cols = ["trial_id", "order", "recipe", "model", "epochs_done", "error"]
    if t.empty or "status" not in t.columns:
        return pd.DataFrame(columns=cols)
    failed = t[t["status"] == "ERROR"].drop_duplicates("trial_id")
    out = pd.DataFrame(
        {
            "trial_id": failed["trial_id"].astype(str),
            "order": failed["order"],
            "recipe": col(failed, "config/recipe").fillna("").astype(str),
            "model": col(failed, "config/model").astype(str),
            "epochs_done": failed["epochs_done"].astype(int),
            "error": col(failed, "error").fillna("").astype(str),
        }
    )
    return out.sort_values("order").reset_index(drop=True)


@dataclass
class BestSoFar:
    """The best score found so far, against trials started and against epochs trained.

    ``trial_*`` lists run over trials in creation order (``trial_value`` is that trial's own score, None when it
    reported none); ``epoch_*`` lists run over every epoch trained by any trial, in the order they were reported.
    """

    metric: str
    trial_number: list[int] = field(default_factory=list)
    trial_id: list[str] = field(default_factory=list)
    trial_value: list[float | None] = field(default_factory=list)
    trial_is_recipe: list[bool] = field(default_factory=list)
    trial_best: list[float | None] = field(default_factory=list)
    epoch_cumulative: list[int] = field(default_factory=list)
    epoch_value: list[float] = field(default_factory=list)
    epoch_trial_id: list[str] = field(default_factory=list)
    epoch_best: list[float | None] = field(default_factory=list)


def _running_best(values: list[float], mode: str) -> list[float | None]:
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and not math.isnan(v) and (best is None or (v > best if mode == "max" else v < best)):
            best = v
        out.append(best)
    return out


def collect_best_so_far(run: RunData) -> BestSoFar:
    """Best-so-far curves: how fast the search found its best, in trials and in compute (epochs trained)."""
    out = BestSoFar(run.metric)
    s = run.summary
    if s.empty or run.metric not in s.columns:
        return out
    s = s.sort_values("order")
    out.trial_number = [int(o) for o in s["order"]]
    out.trial_id = [str(t) for t in s["trial_id"]]
    out.trial_value = [plain(v) for v in s[run.metric]]
    out.trial_is_recipe = [bool(v) for v in s["is_recipe"]]
    out.trial_best = _running_best([v if v is not None else float("nan") for v in out.trial_value], run.mode)

    e = run.trials.dropna(subset=[run.metric]) if run.metric in run.trials.columns else run.trials.iloc[0:0]
    keys = [k for k in ("timestamp", "order", "epoch") if k in e.columns]
    e = e.sort_values(keys, kind="stable")
    out.epoch_cumulative = list(range(1, len(e) + 1))
    out.epoch_value = [float(v) for v in e[run.metric]]
    out.epoch_trial_id = [str(t) for t in e["trial_id"]]
    out.epoch_best = _running_best(out.epoch_value, run.mode)
    return out


#: Hyperparameters drawn on a log axis (as log10) in the parallel coordinates.
_LOG_PARAMS = {"lr", "weight_decay"}


@dataclass
class ParallelDimension:
    """One axis: numeric values as they are (log10 for lr / weight decay), or categories coded 0..k-1."""

    label: str
    values: list[float]
    ticktext: list[str] | None = None  # category names, for categorical axes
    tickvals: list[float] | None = None


@dataclass
class ParallelCoords:
    metric: str
    trial_id: list[str]
    color: list[float]
    dimensions: list[ParallelDimension]
    left_out: list[str] = field(default_factory=list)  # varying params not set in every trial (e.g. width)


def collect_parallel(run: RunData, params: list[str] | None = None, max_params: int = 12) -> ParallelCoords:
    """Hyperparameters that took more than one value across the scored trials, then the score itself.

    ``params`` orders and picks them (e.g. by importance); at most ``max_params`` axes are drawn, so the plot stays
    readable, and the varying ones not drawn are listed in ``left_out``.
    """
    s = run.scored.sort_values("order")
    dims: list[ParallelDimension] = []
    left_out: list[str] = []
    skip = {"config/epochs", "config/seed", "config/recipe"}
    columns = [c for c in s.columns if c.startswith("config/") and c not in skip]
    if params is not None:
        columns = [f"config/{p}" for p in params if f"config/{p}" in columns] + [
            c for c in columns if c.split("/", 1)[1] not in params
        ]
    for column in columns:
        key = column.split("/", 1)[1]
        values = s[column]
        if values.astype(str).nunique(dropna=False) < 2:
            continue
        if values.map(lambda v: plain(v) is None).any() or len(dims) >= max_params:
            left_out.append(key)  # set for some models only (no value to draw), or past the axis limit
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        is_bool = values.map(lambda v: isinstance(v, (bool, np.bool_))).all()
        if numeric.notna().all() and not is_bool and key != "image_size":
            if key in _LOG_PARAMS and (numeric > 0).all():
                dims.append(ParallelDimension(f"log10 {key}", [float(v) for v in np.log10(numeric)]))
            else:
                dims.append(ParallelDimension(key, [float(v) for v in numeric]))
        else:
            text = values.map(str)
            cats = sorted(text.unique(), key=category_key)
            code = {c: i for i, c in enumerate(cats)}
            dims.append(
                ParallelDimension(
                    key, [float(code[v]) for v in text], ticktext=cats, tickvals=[float(i) for i in code.values()]
                )
            )
    scores = [float(v) for v in s[run.metric]] if not s.empty else []
    if not s.empty:
        dims.append(ParallelDimension(run.metric, scores))
    return ParallelCoords(run.metric, [str(t) for t in s["trial_id"]], scores, dims, left_out)


@dataclass
class Importance:
    """fANOVA importance of each hyperparameter, or the reason it could not be computed."""

    params: list[str] = field(default_factory=list)
    importances: list[float] = field(default_factory=list)
    n_trials: int = 0
    left_out: list[str] = field(default_factory=list)  # params not set in every finished trial (conditional)
    reason: str | None = None


def _counted_value(t: Any, mode: str) -> float | None:
    """A study trial's value by the one ranking rule: its best epoch (COMPLETE or PRUNED trials), else its value."""
    if t.state.name not in ("COMPLETE", "PRUNED"):
        return None
    losses = {int(k): float(v) for k, v in (t.user_attrs.get(LOSSES_ATTR) or {}).items()} or None
    counted = counting_epoch(t.intermediate_values, mode, losses)
    if counted is not None:
        return counted[1]
    return float(t.value) if t.state.name == "COMPLETE" and t.value is not None else None


def collect_importance(run: RunData, min_trials: int = 2) -> Importance:
    """fANOVA (Optuna's ``FanovaImportanceEvaluator``, seeded) over the run's Optuna study.

    The objective is each trial's value at the epoch that counts (``runstore.ranking.counting_epoch``, from the
    per-epoch values the study holds), for finished and early-stopped (PRUNED) trials alike.
    A parameter whose range depends on another (the learning rate's range depends on the optimizer) has a different
    distribution in different trials, which Optuna's importance code drops; so the finished trials are copied into an
    in-memory study with each parameter's distribution widened to the union over trials. Parameters that only some
    trials have (a model's ``width``, SGD's ``momentum``) cannot enter fANOVA and are listed in ``left_out``.
    """
    path = run.run_dir / STUDY_FILE
    if not path.is_file():
        return Importance(reason=f"no Optuna study in this run ({STUDY_FILE} is missing)")
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency
        return Importance(reason="optuna is not installed")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = run.name if run.name in names else (names[0] if len(names) == 1 else None)
        if name is None:
            return Importance(reason=f"{STUDY_FILE} holds {len(names)} studies and none is named {run.name!r}")
        study = optuna.load_study(study_name=name, storage=storage)
        finished, values = [], {}
        for t in study.get_trials(deepcopy=False):
            value = _counted_value(t, run.mode)
            if value is not None:
                finished.append(t)
                values[t.number] = value
    except Exception as exc:  # a locked, corrupt or foreign database: say so on the page
        return Importance(reason=f"the Optuna study could not be read: {type(exc).__name__}: {exc}")
    if len(finished) < min_trials:
        return Importance(
            n_trials=len(finished),
            reason=f"needs at least {min_trials} finished trials in the Optuna study; it has {len(finished)}",
        )
    common = set.intersection(*(set(t.params) for t in finished))
    left_out = sorted(set.union(*(set(t.params) for t in finished)) - common)
    dists: dict[str, Any] = {}
    for p in sorted(common):
        merged = _union_distribution([t.distributions[p] for t in finished])
        if merged is None:
            left_out.append(p)
        else:
            dists[p] = merged
    varying = [p for p in dists if len({repr(t.params[p]) for t in finished}) > 1]
    if not varying:
        return Importance(n_trials=len(finished), left_out=left_out, reason="no hyperparameter varied between trials")
    copy = optuna.create_study(direction=study.direction)
    for t in finished:
        copy.add_trial(
            optuna.trial.create_trial(
                params={p: t.params[p] for p in dists},
                distributions=dists,
                value=values[t.number],
            )
        )
    try:
        result = optuna.importance.get_param_importances(
            copy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varying
        )
    except Exception as exc:  # e.g. every trial scored the same, or sklearn missing
        return Importance(
            n_trials=len(finished), left_out=left_out, reason=f"fANOVA failed: {type(exc).__name__}: {exc}"
        )
    return Importance(
        params=list(result), importances=[float(v) for v in result.values()], n_trials=len(finished), left_out=left_out
    )


def _union_distribution(dists: list[Any]) -> Any:
    """One distribution covering all of ``dists`` (same kind), or None when they are of different kinds."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kinds = {type(d) for d in dists}
    if len(kinds) != 1:
        return None
    first = dists[0]
    if isinstance(first, CategoricalDistribution):
        choices: list[Any] = []
        for d in dists:
            choices += [c for c in d.choices if c not in choices]
        return CategoricalDistribution(choices)
    if isinstance(first, (FloatDistribution, IntDistribution)):
        log = all(d.log for d in dists)
        low, high = min(d.low for d in dists), max(d.high for d in dists)
        if isinstance(first, IntDistribution):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(low, high, log=log)
    return None


@dataclass
class AshaRungs:
    """How far trials got: trials reaching each rung, and the epochs ASHA saved against training all to the end."""

    scheduler: str
    max_epochs: int
    grace_period: int
    reduction_factor: int
    rungs: list[int]  # epochs at which ASHA compares trials, then max_epochs
    rung_metric: str  # what ASHA compared them on (runs before --rung-metric compared on the run's metric)
    reached: list[int]  # trials whose epochs trained reached each rung
    started: int  # trials that ended (completed or stopped): the ones ASHA decided about
    epochs_trained: int  # summed over those trials
    epochs_without_stopping: int  # started x max_epochs
    epochs_saved: int
    left_out: int  # failed and running trials, not counted above


def asha_rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """grace * rf^k below max_epochs, then max_epochs: the epochs at which a trial can be stopped, and the end."""
    if grace_period < 1 or reduction_factor < 2 or max_epochs < 1:
        raise ValueError(
            f"need grace_period >= 1, reduction_factor >= 2, max_epochs >= 1; "
            f"got {grace_period}, {reduction_factor}, {max_epochs}"
        )
    rungs = []
    r = grace_period
    while r < max_epochs:
        rungs.append(r)
        r *= reduction_factor
    return [*rungs, max_epochs]


def collect_asha(run: RunData) -> AshaRungs:
    settings = run.info.get("settings") or {}
    scheduler = str(settings.get("scheduler") or "asha")
    max_epochs = run.max_epochs
    grace = int(run.info.get("grace_period") or settings.get("grace_period") or 1)
    rf = int(run.info.get("reduction_factor") or settings.get("reduction_factor") or 3)
    t = run.trials
    if t.empty or "epochs_done" not in t.columns:
        per_trial = pd.DataFrame(columns=["status", "epochs"])
    else:
        per_trial = t.groupby("trial_id", sort=False).agg(status=("status", "first"), epochs=("epochs_done", "max"))
    ended = per_trial[per_trial["status"].isin(["COMPLETED", "STOPPED"])]
    rungs = asha_rungs(min(grace, max_epochs), rf, max_epochs) if scheduler == "asha" and max_epochs else [max_epochs]
    epochs = [int(e) for e in ended["epochs"]]
    trained = sum(epochs)
    return AshaRungs(
        scheduler=scheduler,
        max_epochs=max_epochs,
        grace_period=grace,
        reduction_factor=rf,
        rungs=rungs,
        rung_metric=str(run.info.get("rung_metric") or run.metric),
        reached=[sum(e >= r for e in epochs) for r in rungs],
        started=len(ended),
        epochs_trained=trained,
        epochs_without_stopping=len(ended) * max_epochs,
        epochs_saved=len(ended) * max_epochs - trained,
        left_out=len(per_trial) - len(ended),
    )


def _with_best_line(
    fig: go.Figure, x: list[int], best: list[float | None], metric: str, by: str, x_title: str
) -> go.Figure:
    """Both best-so-far figures: the scores already drawn, then the best so far as a step line over ``x``."""
    fig.add_trace(go.Scatter(x=x, y=best, mode="lines", name="best so far", line={"shape": "hv", "width": 3}))
    return layout(fig, f"Best {esc(metric)} so far, {by}", xaxis_title=x_title, yaxis_title=esc(metric))


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
    return _with_best_line(fig, b.trial_number, b.trial_best, b.metric, "by trial", "trial (in the order started)")


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
            text=escs(b.epoch_trial_id),
            hovertemplate="epoch %{x} of the search (trial %{text})<br>score %{y:.4f}<extra></extra>",
        )
    )
    x_title = "epochs trained, all trials together"
    return _with_best_line(fig, b.epoch_cumulative, b.epoch_best, b.metric, "by compute", x_title)


def draw_parallel(p: ParallelCoords) -> go.Figure:
    dims = []
    for d in p.dimensions:
        dim: dict[str, object] = {"label": esc(d.label), "values": d.values, "tickformat": ".3~g"}
        if d.ticktext is not None:
            dim |= {"tickvals": d.tickvals, "ticktext": escs(d.ticktext), "range": [-0.5, len(d.ticktext) - 0.5]}
        dims.append(dim)
    fig = go.Figure(
        go.Parcoords(
            line={"color": p.color, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": esc(p.metric)}},
            dimensions=dims,
            labelangle=-30,
            labelside="bottom",
        )
    )
    return layout(fig, "Hyperparameters of every scored trial, coloured by score", height=520, margin={"b": 90})


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
    return layout(
        fig,
        f"Hyperparameter importance (fANOVA over {imp.n_trials} trials, each at its best epoch)",
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
    return layout(fig, "Trials reaching each ASHA rung", yaxis_title="trials", height=380)


def build_page(run: RunData) -> Page:
    page = Page(
        "index.html",
        "Overview",
        "Which configurations won, how fast did the search find them, which hyperparameters mattered, "
        "and how much training did ASHA save?",
        fed=run.scored_note,
        nothing=f"No trial has reported {run.metric} yet.",
    )
    lb = collect_leaderboard(run)
    page.add(
        "Leaderboard",
        f"The {min(10, run.counts.scored)} best trials and every seed recipe (shaded), ranked by {run.metric} "
        "at each trial's best epoch; config columns are what the trial trained with.",
        has_data=bool(lb.rows),
        table=lambda: table(lb.columns, lb.rows, lambda r: "recipe" if r.get("recipe") else ""),
    )
    failed = collect_failures(run)
    if not failed.empty:
        page.add(
            "Failed trials",
            "Trials that ended with an error, and the last line of the error.",
            table=lambda: table(
                ["trial", "order", "recipe", "model", "epochs done", "error"],
                [
                    {"trial": r.trial_id, "order": r.order, "recipe": r.recipe, "model": r.model}
                    | {"epochs done": r.epochs_done, "error": r.error}
                    for r in failed.itertuples()
                ],
            ),
        )
    best = collect_best_so_far(run)
    page.add(
        "Best so far, by trial",
        f"{run.score_definition} Trials in the order they started; the seed recipes start first.",
        has_data=bool(best.epoch_value),
        figure=lambda: draw_best_vs_trials(best),
    )
    page.add(
        "Best so far, by compute",
        "Every epoch any trial trained, in the order they were reported, and the best epoch score so far: "
        "what a longer or shorter search would have found.",
        has_data=bool(best.epoch_value),
        figure=lambda: draw_best_vs_epochs(best),
    )
    imp = collect_importance(run)
    par = collect_parallel(run, params=imp.params or None)
    note = (
        "One line per scored trial across the hyperparameters that varied (the most important first when the "
        f"importance below is known; at most 12 axes), coloured by score. {run.score_definition}"
    )
    if par.left_out:
        note += f" Not drawn (set for some models only, or past 12 axes): {', '.join(par.left_out)}."
    page.add("Parallel coordinates", note, has_data=bool(par.trial_id), figure=lambda: draw_parallel(par))
    note = (
        "fANOVA (Optuna's FanovaImportanceEvaluator, seed 0) over the Optuna study: how much of the variance of the "
        "value each trial reported to Optuna (the metric at its last epoch, what TPE learnt from) each "
        "hyperparameter explains. Ranges that depend on another choice (the learning rate's on the optimizer) "
        "are widened to their union."
    )
    if imp.left_out:
        note += f" Left out (not set in every trial): {', '.join(imp.left_out)}."
    page.add(
        "Hyperparameter importance",
        note,
        has_data=imp.reason is None,
        figure=lambda: draw_importance(imp),
        empty=f"Importance not available: {imp.reason}.",
    )
    asha = collect_asha(run)
    if asha.scheduler != "asha":
        empty = f"This run used the {asha.scheduler} scheduler: every trial trains to the end, nothing to save."
        page.add("ASHA", has_data=False, empty=empty)
    elif asha.started == 0:
        page.add("ASHA", has_data=False, empty="No trial has ended yet.")
    else:
        share = asha.epochs_saved / asha.epochs_without_stopping if asha.epochs_without_stopping else 0.0
        page.add(
            "ASHA: trials reaching each rung",
            f"Rungs at grace period {asha.grace_period} × reduction factor {asha.reduction_factor}^k below "
            f"{asha.max_epochs} epochs, then the end; at each rung trials were compared on "
            f"{asha.rung_metric}. {asha.started} trials ended (completed or stopped early; "
            f"stopped includes the time budget) and trained {asha.epochs_trained} epochs; all of them to "
            f"{asha.max_epochs} epochs would have been {asha.epochs_without_stopping}: ASHA saved "
            f"{asha.epochs_saved} epochs ({share:.0%})."
            + (f" {asha.left_out} failed or running trial(s) are not counted." if asha.left_out else ""),
            figure=lambda: draw_asha(asha),
        )
    return page
