"""The numbers of an effect study's report (``python -m search.study``), collected once from its run directory.

A study varies one factor over levels (optionally crossed with a learning-rate rule), repeats every level over
seeds, and trains every trial the same number of epochs. Per level: the mean and a 95% t interval over seeds of the
final and the best validation metric, mean learning curves with a band (against epochs and against optimiser
steps), the train - validation gap over epochs, how long each level stays near chance, time per epoch; then the seed
projects' claims beside the measurement, each with a verdict decided by a stated interval rule. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from reports.rundata import (
    STALL_EPOCHS,
    STALL_MARGIN,
    RunData,
    col,
    epochs_near_chance,
    plain,
    stall_rule,
    stalled,
)
from runstore.metrics import EPOCH_SECONDS

__all__ = [
    "CONFIRMED",
    "INTERVAL_METHOD",
    "NOT_CONFIRMED",
    "NOT_TESTED",
    "UNRESOLVED",
    "Band",
    "Interval",
    "LevelStats",
    "StudyData",
    "Verdict",
    "collect_study",
    "is_study",
    "t_interval",
    "t_quantile",
]

CONFIRMED = "confirmed"
NOT_CONFIRMED = "not confirmed"
UNRESOLVED = "not resolved at this number of seeds"
NOT_TESTED = "not tested by this study"

#: Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1..30: used when scipy is not installed.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """t(0.975, df), the multiplier of a two-sided 95% t interval (scipy if installed, else a table to df = 30)."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df={df}")
    try:
        from scipy.stats import t
    except ImportError:
        return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # within 0.003 of the exact value past df 30
    return float(t.ppf(0.975, df))


#: How every interval on a study's pages is computed; printed on the pages.
INTERVAL_METHOD = (
    "95% t interval over seeds: mean ± t(0.975, n−1) · s / √n, where s is the standard deviation (n−1) of the n seeds' "
    "values. Seeds vary initialisation, augmentation draws and batch order; the patient-level validation split is the "
    "same for every trial, so the interval does not include the sampling of validation images. The t quantile comes "
    "from scipy.stats.t (a table of t(0.975, df) when scipy is not installed)."
)


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and its 95% t interval (``low``/``high`` NaN with fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int

    def above(self, other: Interval) -> bool:
        """This interval lies wholly above ``other`` (False when either is undefined)."""
        return self.low > other.high

    def text(self, fmt: str = ".3f") -> str:
        """``mean [low, high]``, each formatted with ``fmt``."""
        if math.isnan(self.mean):
            return "no data"
        if math.isnan(self.low):
            return f"{self.mean:{fmt}} (n={self.n}, no interval)"
        return f"{self.mean:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95% t interval of ``values`` (NaN ignored); see :data:`INTERVAL_METHOD`."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclass
class Band:
    """A mean curve over seeds with its 95% t band: one value per epoch (x: epoch or mean optimiser steps)."""

    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


@dataclass
class LevelStats:
    """One level of the study (and one learning-rate rule, if the study crossed them), over its seeds."""

    level: str
    lr_rule: str | None
    seeds: list[int]
    final: Interval  # the metric at the last epoch, over the seeds that trained every epoch
    best: Interval  # the metric at each seed's best epoch
    final_train_acc: Interval
    final_val_acc: Interval
    gap_acc_final: Interval  # train_acc - val_acc at the last epoch
    gap_loss_final: Interval  # val_loss - train_loss at the last epoch
    curve: Band  # the metric against epochs
    curve_steps: Band  # the same values against mean cumulative optimiser steps
    train_acc: Band
    val_acc: Band
    gap_acc: Band
    gap_loss: Band
    near_chance: list[int]  # per seed: epochs from the first within STALL_MARGIN of chance
    steps_to_leave: list[float]  # per seed: optimiser steps when it first scored above chance + margin (NaN: never)
    stalled: list[bool | None]  # per seed: stalled.rundata rule (None: the study ran too few epochs to judge)
    seconds_per_epoch: Interval
    images_per_s: Interval

    @property
    def label(self) -> str:
        return self.level if self.lr_rule is None else f"{self.level} · lr {self.lr_rule}"


@dataclass
class Verdict:
    """A seed project's claim, what the study measured, the verdict and the rule that decided it."""

    claim: str
    source: str
    measured: str
    verdict: str
    rule: str


@dataclass
class StudyData:
    """An effect study read from its run directory: its definition, per-level numbers and verdicts."""

    run: RunData
    name: str  # "batch-size" | "augmentation"
    factor: str  # the varied config key: "batch_size" | "augmentation"
    levels: list[str]
    lr_rules: list[str | None]
    seeds: list[int]
    epochs: int
    base: dict[str, Any]
    base_source: str
    train_images: int | None
    groups: list[LevelStats] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def chance(self) -> float:
        return self.run.chance

    @property
    def stall_applies(self) -> bool:
        """The stall rule needs STALL_EPOCHS epochs; a shorter study cannot call anything stalled."""
        return self.epochs >= STALL_EPOCHS

    @property
    def stall_rule(self) -> str:
        return stall_rule(len(self.run.classes))

    def group(self, level: str, lr_rule: str | None = None) -> LevelStats | None:
        return next((g for g in self.groups if g.level == level and g.lr_rule == lr_rule), None)


def is_study(run: RunData) -> bool:
    """Whether ``run`` is an effect study (run.json ``kind: study``) rather than a search."""
    return run.info.get("kind") == "study"


def _text(value: Any) -> str:
    v = plain(value)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _band(frames: list[pd.DataFrame], y: Callable[[pd.DataFrame], pd.Series], x: str = "epoch") -> Band:
    """Per epoch, the mean and t band over the seeds' ``y`` values; x is the mean of column ``x`` at that epoch."""
    rows = pd.concat([pd.DataFrame({"epoch": f["epoch"].astype(int), "x": col(f, x), "y": y(f)}) for f in frames])
    band = Band([], [], [], [])
    for _, at in rows.groupby("epoch", sort=True):
        iv = t_interval(list(at["y"].astype(float)))
        band.x.append(float(at["x"].astype(float).mean()))
        band.mean.append(iv.mean)
        band.low.append(iv.low)
        band.high.append(iv.high)
    return band


def _level_stats(
    run: RunData, level: str, lr_rule: str | None, frames: dict[int, pd.DataFrame], epochs: int
) -> LevelStats:
    """One level's numbers. The final and best values (and the final gaps and accuracies) use only the seeds that
    trained all ``epochs`` (a trial still running or failed would compare an earlier epoch); curves use every seed."""
    metric, chance = run.metric, run.chance
    seeds = sorted(frames)
    fs = [frames[s] for s in seeds]
    done = [f for f in fs if len(f) >= epochs]
    last = [f.iloc[-1] for f in done]
    best_of = max if run.mode == "max" else min
    curves = [[float(v) for v in col(f, "val_balanced_acc")] for f in fs]
    near = [epochs_near_chance(c, chance) for c in curves]
    steps = []
    for f, n, c in zip(fs, near, curves):
        steps.append(float(col(f, "train_steps").iloc[n]) if n < len(c) else math.nan)
    return LevelStats(
        level=level,
        lr_rule=lr_rule,
        seeds=seeds,
        final=t_interval([float(r[metric]) for r in last]),
        best=t_interval([float(best_of(f[metric].dropna())) for f in done]),
        final_train_acc=t_interval([float(r["train_acc"]) for r in last]),
        final_val_acc=t_interval([float(r["val_acc"]) for r in last]),
        gap_acc_final=t_interval([float(r["train_acc"] - r["val_acc"]) for r in last]),
        gap_loss_final=t_interval([float(r["val_loss"] - r["train_loss"]) for r in last]),
        curve=_band(fs, lambda f: f[metric]),
        curve_steps=_band(fs, lambda f: f[metric], x="train_steps"),
        train_acc=_band(fs, lambda f: f["train_acc"]),
        val_acc=_band(fs, lambda f: f["val_acc"]),
        gap_acc=_band(fs, lambda f: f["train_acc"] - f["val_acc"]),
        gap_loss=_band(fs, lambda f: f["val_loss"] - f["train_loss"]),
        near_chance=near,
        steps_to_leave=steps,
        stalled=[stalled(c, chance) for c in curves],
        seconds_per_epoch=t_interval([float(col(f, EPOCH_SECONDS).mean()) for f in fs]),
        images_per_s=t_interval([float(col(f, "train_images_per_s").mean()) for f in fs]),
    )


def collect_study(run: RunData) -> StudyData:
    """Every number a study's pages show, from ``run`` (run.json ``kind: study``; trials.csv one row per epoch)."""
    study = run.info.get("study") or {}
    factors = [str(f) for f in study.get("factors") or []]
    factor = factors[0] if factors else ("batch_size" if study.get("name") == "batch-size" else "augmentation")
    levels_def = study.get("levels") or {}
    t = run.trials
    if not t.empty and run.metric in t.columns:
        t = t.dropna(subset=[run.metric])
    has_rule = "lr_rule" in factors or "config/lr_rule" in t.columns
    key_level = t[f"config/{factor}"].map(_text) if f"config/{factor}" in t.columns else pd.Series("", index=t.index)
    key_rule = t["config/lr_rule"].map(_text) if has_rule and "config/lr_rule" in t.columns else None
    levels = [_text(v) for v in levels_def.get(factor, [])]
    levels += [v for v in dict.fromkeys(key_level) if v not in levels]
    rules: list[str | None] = [None]
    if key_rule is not None:
        rules = [_text(v) for v in levels_def.get("lr_rule", [])]
        rules += [v for v in dict.fromkeys(key_rule) if v not in rules]
    data = StudyData(
        run=run,
        name=str(study.get("name") or factor.replace("_", "-")),
        factor=factor,
        levels=levels,
        lr_rules=rules,
        seeds=[int(s) for s in study.get("seeds") or []],
        epochs=int(study.get("epochs") or run.max_epochs or 0),
        base=dict(study.get("base") or {}),
        base_source=str(study.get("base_source") or ""),
        train_images=study.get("train_images"),
    )
    if t.empty:
        return data
    for level in levels:
        for rule in rules:
            mask = key_level == level
            if rule is not None and key_rule is not None:
                mask &= key_rule == rule
            sub = t[mask]
            if sub.empty:
                continue
            frames = {
                int(plain(df["config/seed"].iloc[0]) if "config/seed" in df.columns else i): df.sort_values("epoch")
                for i, (_, df) in enumerate(sub.groupby("trial_id", sort=False))
            }
            data.groups.append(_level_stats(run, level, rule, frames, data.epochs))
    data.verdicts = batch_size_verdicts(data) if factor == "batch_size" else augmentation_verdicts(data)
    return data


# -- verdicts ------------------------------------------------------------------------------------------------------

SEED_004 = "seed 004 (CIFAR-style CNN to AlexNet-like grey 256x300, 3 classes)"
SEED_000 = "seed 000 (TinyVGG, flips + TrivialAugmentWide, 4 classes)"


def _missing(data: StudyData, levels: Sequence[str], rule: str | None) -> list[str]:
    return [lv for lv in levels if data.group(lv, rule) is None]


def batch_size_verdicts(data: StudyData) -> list[Verdict]:
    """Seed 004's two claims, per learning-rate rule ("fixed", what the seed did, first)."""
    out = []
    rules = sorted(data.lr_rules, key=lambda r: r not in (None, "fixed"))
    metric = data.run.metric
    for rule in rules:
        on = "" if rule is None else f" (lr rule {rule})"
        sweet_rule = (
            f"confirmed if the 95% interval of final {metric} at batch 35 lies wholly above the intervals of batch 1 "
            "and of batch 300; not confirmed if it lies wholly below either; otherwise not resolved"
        )
        claim = f"Batch size 35 is a sweet spot: better than 1 and 300{on}."
        missing = _missing(data, ["1", "35", "300"], rule)
        if missing:
            out.append(
                Verdict(claim, SEED_004, f"levels {', '.join(missing)} not in this study", NOT_TESTED, sweet_rule)
            )
        else:
            b1, b35, b300 = (cast(LevelStats, data.group(lv, rule)) for lv in ("1", "35", "300"))
            measured = "; ".join(f"batch {g.level}: {g.final.text()}" for g in (b1, b35, b300))
            if b35.final.above(b1.final) and b35.final.above(b300.final):
                verdict = CONFIRMED
            elif b1.final.above(b35.final) or b300.final.above(b35.final):
                verdict = NOT_CONFIRMED
            else:
                verdict = UNRESOLVED
            out.append(Verdict(claim, SEED_004, f"final {metric}: {measured}", verdict, sweet_rule))
        for level in ("300", "1"):
            claim = f"At batch {level} accuracy stays near chance for a long time before it rises{on}."
            stall_rule_text = (
                f"confirmed if every seed at batch {level} is still within {STALL_MARGIN} of chance after "
                f"{STALL_EPOCHS} epochs while no seed at batch 35 is; not confirmed if no seed at batch {level} is; "
                f"otherwise not resolved (the rule needs a study of at least {STALL_EPOCHS} epochs)"
            )
            g, g35 = data.group(level, rule), data.group("35", rule)
            if g is None or g35 is None:
                missing = _missing(data, [level, "35"], rule)
                out.append(
                    Verdict(
                        claim, SEED_004, f"levels {', '.join(missing)} not in this study", NOT_TESTED, stall_rule_text
                    )
                )
                continue
            measured = (
                f"batch {level}: epochs near chance per seed {g.near_chance}, optimiser steps when it left "
                f"{_steps_text(g.steps_to_leave)}; batch 35: {g35.near_chance}, {_steps_text(g35.steps_to_leave)}"
            )
            if not data.stall_applies:
                verdict = UNRESOLVED
                measured += f" (the study trained {data.epochs} epochs; the stall rule needs {STALL_EPOCHS})"
            elif all(g.stalled) and not any(g35.stalled):
                verdict = CONFIRMED
            elif not any(g.stalled):
                verdict = NOT_CONFIRMED
            else:
                verdict = UNRESOLVED
            out.append(Verdict(claim, SEED_004, measured, verdict, stall_rule_text))
    return out


def _steps_text(steps: Sequence[float]) -> str:
    return "[" + ", ".join("never" if math.isnan(s) else f"{s:.0f}" for s in steps) + "]"


def augmentation_verdicts(data: StudyData) -> list[Verdict]:
    """Seed 000's "still overfits" and seed 004's "heavy augmentation overfit more" and "rotation hurts"."""
    out = []
    metric = data.run.metric
    rule = (
        "confirmed if the 95% interval of the final train_acc − val_acc gap at the seed level lies wholly above 0; "
        "not confirmed if it lies wholly at or below 0; otherwise not resolved"
    )
    claim = "TinyVGG with horizontal flips and TrivialAugmentWide still overfits."
    g = data.group("seed")
    if g is None:
        out.append(Verdict(claim, SEED_000, "level seed not in this study", NOT_TESTED, rule))
    else:
        verdict = CONFIRMED if g.gap_acc_final.low > 0 else NOT_CONFIRMED if g.gap_acc_final.high <= 0 else UNRESOLVED
        accs = f"train_acc {g.final_train_acc.text()}, val_acc {g.final_val_acc.text()}"
        measured = f"final gap {g.gap_acc_final.text()} ({accs})"
        out.append(Verdict(claim, SEED_000, measured, verdict, rule))
    out.append(
        _compare(
            data,
            "Heavy augmentation (every op, rotations among them) makes the model overfit more than none.",
            "all",
            "none",
            lambda s: s.gap_acc_final,
            "final train_acc − val_acc gap",
        )
    )
    out.append(
        _compare(
            data,
            "Rotation (black corners a real film never has) lowers validation accuracy.",
            "none",
            "rotate",
            lambda s: s.final,
            f"final {metric}",
        )
    )
    return out


def _compare(
    data: StudyData, claim: str, high: str, low: str, value: Callable[[LevelStats], Interval], what: str
) -> Verdict:
    """Claim "level ``high``'s value exceeds level ``low``'s", decided by non-overlapping intervals."""
    rule = (
        f"confirmed if the 95% interval of the {what} at level {high} lies wholly above that at level {low}; "
        f"not confirmed if it lies wholly below; otherwise not resolved"
    )
    a, b = data.group(high), data.group(low)
    if a is None or b is None:
        missing = [lv for lv, g in ((high, a), (low, b)) if g is None]
        return Verdict(claim, SEED_004, f"levels {', '.join(missing)} not in this study", NOT_TESTED, rule)
    va, vb = value(a), value(b)
    verdict = CONFIRMED if va.above(vb) else NOT_CONFIRMED if vb.above(va) else UNRESOLVED
    return Verdict(claim, SEED_004, f"{what}: {high} {va.text()}; {low} {vb.text()}", verdict, rule)
