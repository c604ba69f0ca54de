"""Step one of every figure: read a run directory and collect the plain numbers a figure shows.

Nothing here knows Plotly. Each ``collect_*`` function takes a :class:`RunData` and returns a small dataclass (or a
small DataFrame) of plain values, so the tests can compare what a page will show against numbers known in advance,
and ``reports.figures`` can draw from it without computing anything.

Conventions used on every page:

- A trial's *score* is the run's metric (``run.json`` ``metric``, by default ``val_balanced_acc``) at the trial's
  best epoch, as ``search.rundir.trial_summary`` picks it; the same number the leaderboard and ``search.export`` use.
- Trials are numbered in the order Ray Tune created them (the index in the trial folder's name), so the seed recipes,
  queued first, come first.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runstore.layout import STUDY_FILE, load_run_info
from runstore.ranking import rank_trials as trial_summary
from runstore.trials import load_trials

__all__ = [
    "AUGMENT_OPS",
    "STALL_MARGIN",
    "AshaRungs",
    "AugmentEffect",
    "BatchSizeStats",
    "BestSoFar",
    "ClassRecall",
    "Confusion",
    "Curve",
    "FitCurve",
    "GroupedScores",
    "Importance",
    "Leaderboard",
    "ParallelCoords",
    "ParallelDimension",
    "RunData",
    "TrialCounts",
    "asha_rungs",
    "augment_ops_on",
    "collect_asha",
    "collect_augmentation",
    "collect_batch_size",
    "collect_best_so_far",
    "collect_class_recall",
    "collect_confusion",
    "collect_failures",
    "collect_fit_curves",
    "collect_gap",
    "collect_importance",
    "collect_leaderboard",
    "collect_learning_curves",
    "collect_parallel",
    "collect_resolution",
    "load_run",
    "turn_epoch",
]

#: Ray Tune names trial folders <trainable>_<trial id>_<index>_<params>_<date>; the index is the creation order.
_TRIAL_INDEX = re.compile(r"_[0-9a-f]{5,}_(\d+)_")

#: A trial "stalled" when its best validation balanced accuracy came within this much of chance (1 / classes).
STALL_MARGIN = 0.02

#: Augmentation ops and when each counts as on, read from the trial's config.
AUGMENT_OPS: dict[str, str] = {
    "hflip": "hflip > 0",
    "vflip": "vflip > 0",
    "rotate": "rotate > 0",
    "brightness": "brightness > 0",
    "contrast": "contrast > 0",
    "trivial_augment": "trivial_augment on",
    "crop_scale": "crop_scale < 1",
}


# -- the run as tables -------------------------------------------------------------------------------------------


@dataclass
class TrialCounts:
    """How many trials a run holds and how they ended; every page prints this in small type."""

    total: int = 0
    completed: int = 0
    stopped: int = 0
    failed: int = 0
    failed_before_first_epoch: int = 0
    running: int = 0
    scored: int = 0  # trials that reported the metric at least once
    epochs: int = 0  # epochs trained, summed over trials

    def describe(self) -> str:
        parts = [f"{self.completed} completed", f"{self.stopped} stopped early"]
        parts.append(
            f"{self.failed} failed"
            + (
                f" ({self.failed_before_first_epoch} before their first epoch)"
                if self.failed_before_first_epoch
                else ""
            )
        )
        if self.running:
            parts.append(f"{self.running} running")
        return f"{self.total} trials ({', '.join(parts)}); {self.scored} reported a score; {self.epochs} epochs trained"


@dataclass
class RunData:
    """One run read once: run.json, the per-epoch table and the per-trial summary every collector works from."""

    run_dir: Path
    name: str
    info: dict[str, Any]
    classes: list[str]
    metric: str
    mode: str
    finished: bool
    max_epochs: int
    trials: pd.DataFrame  # one row per trial per epoch (search.rundir.load_trials) plus ``order``
    summary: pd.DataFrame  # one row per trial at its best epoch, best first, plus ``order`` and ``is_recipe``
    counts: TrialCounts

    @property
    def scored(self) -> pd.DataFrame:
        """Summary rows of trials that reported the metric at least once, best first."""
        if self.metric not in self.summary.columns:
            return self.summary.iloc[0:0]
        return self.summary[self.summary[self.metric].notna()]

    @property
    def chance(self) -> float:
        """Balanced accuracy of a classifier that always answers one class."""
        return 1.0 / len(self.classes) if self.classes else float("nan")


def _trial_order(trial_dir: str) -> int | None:
    m = _TRIAL_INDEX.search(str(trial_dir))
    return int(m.group(1)) if m else None


def _classes(info: dict[str, Any], trials: pd.DataFrame) -> list[str]:
    data = info.get("data") or {}
    classes = data.get("classes") if isinstance(data, dict) else None
    if classes:
        return [str(c) for c in classes]
    # Older or foreign runs: the per-class recall columns, in column order.
    return [c[len("val_recall_") :] for c in trials.columns if c.startswith("val_recall_")]


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory (finished or still going); a clear ``UserError`` when it holds no run."""
    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    settings = info.get("settings") or {}
    metric = str(info.get("metric") or settings.get("metric") or "val_balanced_acc")
    mode = str(info.get("mode") or settings.get("mode") or ("min" if metric == "val_loss" else "max"))
    trials = load_trials(run_dir)
    if "trial_dir" in trials.columns and not trials.empty:
        orders = {d: _trial_order(d) for d in trials["trial_dir"].unique()}
        fallback = {d: i + 1 for i, d in enumerate(sorted(orders, key=lambda d: (orders[d] is None, orders[d] or 0)))}
        trials["order"] = trials["trial_dir"].map(lambda d: orders[d] if orders[d] is not None else fallback[d])
    else:
        trials["order"] = pd.Series(dtype="int64")
    summary = trial_summary(trials, metric, mode)
    if "order" not in summary.columns:
        summary["order"] = pd.Series(dtype="int64")
    summary["is_recipe"] = _col(summary, "config/recipe").fillna("").astype(str).ne("")
    max_epochs = info.get("max_epochs") or settings.get("max_epochs")
    if not max_epochs and "config/epochs" in trials.columns and trials["config/epochs"].notna().any():
        max_epochs = trials["config/epochs"].max()
    return RunData(
        run_dir=run_dir,
        name=str(info.get("name") or run_dir.name),
        info=info,
        classes=_classes(info, trials),
        metric=metric,
        mode=mode,
        finished=bool(info.get("finished", False)),
        max_epochs=int(max_epochs or 0),
        trials=trials,
        summary=summary,
        counts=_counts(trials, summary, metric),
    )


def _counts(trials: pd.DataFrame, summary: pd.DataFrame, metric: str) -> TrialCounts:
    if trials.empty:
        return TrialCounts()
    per_trial = trials.groupby("trial_id", sort=False).agg(status=("status", "first"), epochs=("epochs_done", "max"))
    status = per_trial["status"]
    return TrialCounts(
        total=len(per_trial),
        completed=int((status == "COMPLETED").sum()),
        stopped=int((status == "STOPPED").sum()),
        failed=int((status == "ERROR").sum()),
        failed_before_first_epoch=int(((status == "ERROR") & (per_trial["epochs"] == 0)).sum()),
        running=int((status == "RUNNING").sum()),
        scored=int(summary[metric].notna().sum()) if metric in summary.columns else 0,
        epochs=int(per_trial["epochs"].sum()),
    )


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or a column of NaN when the run never wrote it (a run with no results, an older run)."""
    return df[name] if name in df.columns else pd.Series(np.nan, index=df.index, dtype="float64")


def _num(v: Any) -> float:
    """A config or metric value as float; NaN for missing, None, or text."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def _plain(v: Any) -> Any:
    """numpy / pandas scalars to Python; NaN to None."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _running_best(values: list[float], mode: str) -> list[float | None]:
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and not math.isnan(v) and (best is None or (v > best if mode == "max" else v < best)):
            best = v
        out.append(best)
    return out


def augment_ops_on(config: pd.Series | dict[str, Any]) -> list[str]:
    """The augmentation ops a trial's config turns on (see :data:`AUGMENT_OPS`), from ``config/<key>`` values."""

    def get(key: str) -> Any:
        return config.get(f"config/{key}")

    on = []
    for op in ("hflip", "vflip", "rotate", "brightness", "contrast"):
        if _num(get(op)) > 0:
            on.append(op)
    if _truthy(get("trivial_augment")):
        on.append("trivial_augment")
    crop = _num(get("crop_scale"))
    if not math.isnan(crop) and crop < 1:
        on.append("crop_scale")
    return on


# -- Overview ----------------------------------------------------------------------------------------------------

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
    """Top ``top`` scored trials by the run's metric, and every seed recipe wherever it ranked."""
    scored = run.scored.reset_index(drop=True)
    columns = ["rank", "trial", "recipe", "status", run.metric, "best epoch / epochs", "val_acc", "val_auroc"]
    columns += [h for h, _ in LEADERBOARD_CONFIG] + ["augmentation"]
    rows = []
    for rank, r in scored.iterrows():
        if rank >= top and not r["is_recipe"]:
            continue
        row: dict[str, Any] = {
            "rank": rank + 1,
            "trial": str(r["trial_id"]),
            "recipe": str(r.get("config/recipe") or "") if r["is_recipe"] else "",
            "status": str(r["status"]),
            run.metric: _plain(r[run.metric]),
            "best epoch / epochs": f"{int(r['best_epoch'])} / {int(r['epochs_done'])}",
            "val_acc": _plain(r.get("val_acc")),
            "val_auroc": _plain(r.get("val_auroc")),
        }
        for heading, col in LEADERBOARD_CONFIG:
            row[heading] = _plain(r.get(col))
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
            "recipe": _col(failed, "config/recipe").fillna("").astype(str),
            "model": _col(failed, "config/model").astype(str),
            "epochs_done": failed["epochs_done"].astype(int),
            "error": _col(failed, "error").fillna("").astype(str),
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


def collect_best_so_far(run: RunData) -> BestSoFar:
    """Best-so-far curves: how fast the search found its best, in trials and in compute (epochs trained)."""
    out = BestSoFar(run.metric)
    s = run.summary
    if s.empty or run.metric not in s.columns:
        return out
    s = s.sort_values("order")
    out.trial_number = [int(o) for o in s["order"]]
    out.trial_id = [str(t) for t in s["trial_id"]]
    out.trial_value = [_plain(v) for v in s[run.metric]]
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
    for col in columns:
        key = col.split("/", 1)[1]
        values = s[col]
        if values.astype(str).nunique(dropna=False) < 2:
            continue
        if values.map(lambda v: _plain(v) is None).any() or len(dims) >= max_params:
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
            cats = sorted(text.unique(), key=_category_key)
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


def _category_key(text: str) -> tuple[int, float, str]:
    """Sort categories numerically where they are numbers (or image sizes), else alphabetically."""
    size = _image_pixels(text)
    if size is not None:
        return (0, float(size), text)
    return (1, 0.0, text)


@dataclass
class Importance:
    """fANOVA importance of each hyperparameter, or the reason it could not be computed."""

    params: list[str] = field(default_factory=list)
    importances: list[float] = field(default_factory=list)
    n_trials: int = 0
    left_out: list[str] = field(default_factory=list)  # params not set in every finished trial (conditional)
    reason: str | None = None


def collect_importance(run: RunData, min_trials: int = 2) -> Importance:
    """fANOVA (Optuna's ``FanovaImportanceEvaluator``, seeded) over the run's Optuna study.

    The objective is the value each trial reported to Optuna (the metric at its last epoch: what TPE learnt from).
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
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
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
                value=float(t.value),  # type: ignore[arg-type]
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


# -- Batch size --------------------------------------------------------------------------------------------------


@dataclass
class BatchSizeStats:
    """Per trial: batch size, learning rate, score, best balanced accuracy, stalled or not; then per batch size."""

    metric: str
    chance: float
    stall_rule: str
    per_trial: pd.DataFrame  # trial_id, batch_size, lr, lr_per_sample, score, best_balanced_acc, stalled
    per_size: pd.DataFrame  # batch_size, trials, stalled, stalled_share, median_score, best_score


def collect_batch_size(run: RunData) -> BatchSizeStats:
    """Score by batch size, and how often each batch size stalled at chance (the majority-class answer).

    Stalled: the trial's best validation balanced accuracy over all its epochs is within :data:`STALL_MARGIN` of
    chance, 1 / number of classes (what a model that always answers one class, e.g. the majority class, scores).
    """
    chance = run.chance
    rule = (
        f"stalled = best val_balanced_acc over all epochs ≤ 1/{len(run.classes)} + {STALL_MARGIN} = "
        f"{chance + STALL_MARGIN:.3f} (a model that always answers one class scores exactly 1/{len(run.classes)})"
    )
    s = run.scored
    t = run.trials
    if s.empty:
        cols = ["trial_id", "batch_size", "lr", "lr_per_sample", "score", "best_balanced_acc", "stalled"]
        empty = pd.DataFrame(columns=cols)
        size_cols = ["batch_size", "trials", "stalled", "stalled_share", "median_score", "best_score"]
        return BatchSizeStats(run.metric, chance, rule, empty, pd.DataFrame(columns=size_cols))
    best_bal = t.groupby("trial_id")["val_balanced_acc"].max() if "val_balanced_acc" in t.columns else None
    per = pd.DataFrame(
        {
            "trial_id": s["trial_id"].astype(str),
            "batch_size": pd.to_numeric(_col(s, "config/batch_size"), errors="coerce"),
            "lr": pd.to_numeric(_col(s, "config/lr"), errors="coerce"),
            "score": s[run.metric].astype(float),
        }
    )
    per["lr_per_sample"] = per["lr"] / per["batch_size"]
    per["best_balanced_acc"] = per["trial_id"].map(best_bal) if best_bal is not None else np.nan
    per["stalled"] = per["best_balanced_acc"] <= chance + STALL_MARGIN + 1e-9
    per = per.dropna(subset=["batch_size"]).reset_index(drop=True)
    per["batch_size"] = per["batch_size"].astype(int)
    sizes = (
        per.groupby("batch_size")
        .agg(
            trials=("trial_id", "size"),
            stalled=("stalled", "sum"),
            median_score=("score", "median"),
            best_score=("score", "max" if run.mode == "max" else "min"),
        )
        .reset_index()
    )
    sizes["stalled"] = sizes["stalled"].astype(int)
    sizes["stalled_share"] = sizes["stalled"] / sizes["trials"]
    sizes = sizes[["batch_size", "trials", "stalled", "stalled_share", "median_score", "best_score"]]
    return BatchSizeStats(run.metric, chance, rule, per, sizes)


@dataclass
class Curve:
    """One trial's metric per epoch, with the group it is coloured by."""

    trial_id: str
    group: str
    epochs: list[int]
    values: list[float]


def collect_learning_curves(run: RunData, by: str = "batch_size", metric: str | None = None) -> list[Curve]:
    """Per scored trial, ``metric`` (default: the run's) per epoch, grouped by ``config/<by>``; sorted by group."""
    metric = metric or run.metric
    t = run.trials
    if t.empty or metric not in t.columns:
        return []
    curves = []
    for tid, df in t.dropna(subset=[metric]).groupby("trial_id", sort=False):
        df = df.sort_values("epoch")
        group = df[f"config/{by}"].iloc[0] if f"config/{by}" in df.columns else ""
        curves.append(
            Curve(str(tid), str(_plain(group)), [int(e) for e in df["epoch"]], [float(v) for v in df[metric]])
        )
    return sorted(curves, key=lambda c: (_category_key(c.group), c.trial_id))


# -- Overfitting -------------------------------------------------------------------------------------------------


def turn_epoch(train_loss: list[float], val_loss: list[float]) -> int | None:
    """First epoch (1-based) where validation loss is above its lowest so far while training loss sets a new low.

    That is where the model starts fitting the training set at the validation set's expense. None if it never does.
    """
    best_val, best_train = math.inf, math.inf
    for i, (tr, va) in enumerate(zip(train_loss, val_loss)):
        if i > 0 and va > best_val and tr < best_train:
            return i + 1
        best_val, best_train = min(best_val, va), min(best_train, tr)
    return None


@dataclass
class FitCurve:
    """Train and validation accuracy and loss per epoch of one chosen trial, with its turn-up epoch."""

    trial_id: str
    role: str  # "best", "worst", or the seed recipe's name
    epochs: list[int]
    train_acc: list[float]
    val_acc: list[float]
    train_loss: list[float]
    val_loss: list[float]
    turn_epoch: int | None


_FIT_COLUMNS = ("train_acc", "val_acc", "train_loss", "val_loss")


def _fit_curve(run: RunData, tid: str, role: str) -> FitCurve | None:
    df = run.trials[run.trials["trial_id"].astype(str) == tid]
    if any(c not in df.columns for c in _FIT_COLUMNS):
        return None
    df = df.dropna(subset=list(_FIT_COLUMNS)).sort_values("epoch")
    if df.empty:
        return None
    lists = {c: [float(v) for v in df[c]] for c in _FIT_COLUMNS}
    return FitCurve(
        tid, role, [int(e) for e in df["epoch"]], **lists, turn_epoch=turn_epoch(lists["train_loss"], lists["val_loss"])
    )


def collect_fit_curves(run: RunData) -> list[FitCurve]:
    """The best trial, the worst trial that trained at least two epochs (else the worst), and every seed recipe."""
    s = run.scored
    if s.empty:
        return []
    chosen: dict[str, str] = {str(s.iloc[0]["trial_id"]): "best"}
    longer = s[s["epochs_done"] >= 2]
    worst = (longer if not longer.empty else s).iloc[-1]
    chosen.setdefault(str(worst["trial_id"]), "worst")
    for _, r in s[s["is_recipe"]].sort_values("order").iterrows():
        tid = str(r["trial_id"])
        recipe = str(r["config/recipe"])
        chosen[tid] = f"{chosen[tid]}, {recipe}" if tid in chosen else recipe
    return [c for tid, role in chosen.items() if (c := _fit_curve(run, tid, role)) is not None]


def collect_gap(run: RunData) -> pd.DataFrame:
    """Per trial at its last epoch: gap = train_acc - val_acc, against augmentation ops on, parameters and epochs.

    Also the turn-up epoch (:func:`turn_epoch`) of every trial.
    """
    cols = [
        "trial_id",
        "gap",
        "train_acc",
        "val_acc",
        "augment_ops",
        "augment_names",
        "num_params",
        "epochs",
        "turn_epoch",
    ]
    t = run.trials
    if t.empty or any(c not in t.columns for c in _FIT_COLUMNS):
        return pd.DataFrame(columns=cols)
    rows = []
    for tid, df in t.dropna(subset=["train_acc", "val_acc"]).groupby("trial_id", sort=False):
        df = df.sort_values("epoch")
        last = df.iloc[-1]
        ops = augment_ops_on(last)
        losses = df.dropna(subset=["train_loss", "val_loss"])
        rows.append(
            {
                "trial_id": str(tid),
                "gap": float(last["train_acc"] - last["val_acc"]),
                "train_acc": float(last["train_acc"]),
                "val_acc": float(last["val_acc"]),
                "augment_ops": len(ops),
                "augment_names": ", ".join(ops) or "none",
                "num_params": _num(last.get("num_params")),
                "epochs": int(last["epoch"]),
                "turn_epoch": turn_epoch(list(losses["train_loss"]), list(losses["val_loss"])),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    out["turn_epoch"] = out["turn_epoch"].astype("Int64")
    return out


# -- Resolution and augmentation ---------------------------------------------------------------------------------


def _image_pixels(text: str) -> int | None:
    """``"64"`` -> 4096, ``"96x112"`` -> 10752; None if ``text`` is not an image size (or plain number)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:x\s*(\d+))?\s*", str(text))
    if not m:
        return None
    h = int(m.group(1))
    return h * int(m.group(2) or h)


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
    text = s[col].map(lambda v: "none" if _plain(v) is None else str(_plain(v)))
    groups = sorted(text.unique(), key=_category_key)
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


def collect_augmentation(run: RunData) -> list[AugmentEffect]:
    """For each op in :data:`AUGMENT_OPS`: the scores of scored trials that had it on, and of those that had it off."""
    s = run.scored
    ops_on = [set(augment_ops_on(r)) for _, r in s.iterrows()]
    scores = [float(v) for v in s[run.metric]] if not s.empty else []
    return [
        AugmentEffect(
            op,
            rule,
            [v for v, on in zip(scores, ops_on) if op in on],
            [v for v, on in zip(scores, ops_on) if op not in on],
        )
        for op, rule in AUGMENT_OPS.items()
    ]


# -- Per class ---------------------------------------------------------------------------------------------------


@dataclass
class ClassRecall:
    """Validation recall per class of the top trials, each at its best epoch (``recall[i][j]``: trial i, class j)."""

    classes: list[str]
    trial_id: list[str]
    rank: list[int]
    recall: list[list[float | None]]


def collect_class_recall(run: RunData, top: int = 8) -> ClassRecall:
    s = run.scored.head(top)
    recall = [[_plain(r.get(f"val_recall_{c}")) for c in run.classes] for _, r in s.iterrows()]
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
