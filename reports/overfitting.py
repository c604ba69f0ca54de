"""The overfitting page: training against validation for chosen trials, the generalisation gap and the
turn-up epoch of every trial; each figure's data type, its collect step and its draw step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.page import PALETTE, Page, esc, layout, table
from reports.rundata import AUGMENT_OPS, RunData, augment_ops_on, confounded, num

__all__ = ["FitCurve", "build_page", "collect_fit_curves", "collect_gap", "turn_epoch"]

#: Marker per trial: trials ASHA stopped early (often after one epoch) are told apart from those that ran on.
_MARKERS = {False: "circle", True: "triangle-down-open"}


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

    Also the turn-up epoch (:func:`turn_epoch`) of every trial, whether ASHA stopped it early, and ``gap_equal``:
    the gap at ``equal_epoch``, the furthest epoch every trial here reached (the same in every row), so trials
    are compared after the same amount of training.
    """
    cols = [
        "trial_id",
        "gap",
        "gap_equal",
        "equal_epoch",
        "stopped_early",
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
    fitted = t.dropna(subset=["train_acc", "val_acc"])
    equal_epoch = int(fitted.groupby("trial_id")["epoch"].max().min()) if not fitted.empty else 0
    for tid, df in fitted.groupby("trial_id", sort=False):
        df = df.sort_values("epoch")
        last = df.iloc[-1]
        at_equal = df[df["epoch"].astype(int) == equal_epoch]
        ops = augment_ops_on(last)
        losses = df.dropna(subset=["train_loss", "val_loss"])
        rows.append(
            {
                "trial_id": str(tid),
                "gap": float(last["train_acc"] - last["val_acc"]),
                "gap_equal": float(at_equal["train_acc"].iloc[0] - at_equal["val_acc"].iloc[0])
                if not at_equal.empty
                else float("nan"),
                "equal_epoch": equal_epoch,
                "stopped_early": str(last.get("status")) == "STOPPED",
                "train_acc": float(last["train_acc"]),
                "val_acc": float(last["val_acc"]),
                "augment_ops": len(ops),
                "augment_names": ", ".join(ops) or "none",
                "num_params": num(last.get("num_params")),
                "epochs": int(last["epoch"]),
                "turn_epoch": turn_epoch(list(losses["train_loss"]), list(losses["val_loss"])),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    out["turn_epoch"] = out["turn_epoch"].astype("Int64")
    return out


def draw_fit_curves(curves: list[FitCurve]) -> go.Figure:
    """Accuracy (left) and loss (right) per epoch: training dashed, validation solid; stars at the turn-up epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"), horizontal_spacing=0.08)
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        label = f"{esc(c.role)} ({esc(c.trial_id)})"
        for col, (train, val) in enumerate(((c.train_acc, c.val_acc), (c.train_loss, c.val_loss)), start=1):
            for values, kind, dash in ((train, "train", "dash"), (val, "validation", "solid")):
                fig.add_trace(
                    go.Scatter(
                        x=c.epochs,
                        y=values,
                        mode="lines+markers",
                        name=f"{label} {kind}",
                        legendgroup=label,
                        showlegend=col == 1,
                        line={"color": color, "dash": dash},
                        hovertemplate=f"{label} {kind}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        if c.turn_epoch is not None:
            k = c.epochs.index(c.turn_epoch)
            fig.add_trace(
                go.Scatter(
                    x=[c.turn_epoch],
                    y=[c.val_loss[k]],
                    mode="markers",
                    name=f"{label}: validation loss turns up",
                    legendgroup=label,
                    marker={"symbol": "star", "size": 16, "color": color, "line": {"width": 1, "color": "black"}},
                    hovertemplate=f"{label}<br>validation loss turns up at epoch %{{x}}<extra></extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title="epoch", dtick=1)
    return layout(fig, "Training (dashed) against validation (solid)", height=520)


def draw_gap(gap: pd.DataFrame, equal: bool = False) -> go.Figure:
    """Generalisation gap at each trial's last epoch (or at the equal-training epoch) against augmentation ops on,
    parameters and epochs trained; trials ASHA stopped early as open triangles."""
    y = "gap_equal" if equal else "gap"
    fig = make_subplots(
        rows=1,
        cols=3,
        shared_yaxes=True,
        subplot_titles=("augmentation ops on", "model parameters", "epochs trained"),
        horizontal_spacing=0.04,
    )
    hover = [
        f"trial {esc(t)}<br>gap {g:.3f} (last epoch: train {a:.3f}, val {v:.3f})<br>augmentation: {esc(n)}"
        + ("<br>stopped early by ASHA" if s else "")
        for t, g, a, v, n, s in zip(
            gap["trial_id"], gap[y], gap["train_acc"], gap["val_acc"], gap["augment_names"], gap["stopped_early"]
        )
    ]
    for col, key in enumerate(("augment_ops", "num_params", "epochs"), start=1):
        fig.add_trace(
            go.Scatter(
                x=list(gap[key]),
                y=list(gap[y]),
                mode="markers",
                marker={
                    "size": 10,
                    "color": PALETTE[col - 1],
                    "symbol": [_MARKERS[bool(s)] for s in gap["stopped_early"]],
                },
                name=key,
                showlegend=False,
                hovertext=hover,
                hoverinfo="text",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_xaxes(dtick=1, row=1, col=1)
    fig.update_xaxes(dtick=1, row=1, col=3)
    where = f"at epoch {int(gap['equal_epoch'].iloc[0])}" if equal and not gap.empty else "at the last epoch"
    fig.update_yaxes(title=f"train_acc - val_acc {where}", row=1, col=1)
    fig.add_hline(y=0, line={"color": "#aaa", "dash": "dot"})
    title = f"Generalisation gap {where} (equal training)" if equal else "Generalisation gap at each trial's end"
    return layout(fig, title, height=420)


def build_page(run: RunData) -> Page:
    curves = collect_fit_curves(run)
    gap = collect_gap(run)
    page = Page(
        "overfitting.html",
        "Overfitting",
        "When do trials start to overfit, and does augmentation, model size or training longer widen the gap "
        "between training and validation?",
        fed=f"The curves show {len(curves)} chosen trial(s); the gap uses the {len(gap)} trial(s) that reported "
        "training and validation accuracy.",
        nothing="No trial has reported an epoch yet.",
    )
    rule = (
        "Turn-up epoch: the first epoch whose validation loss is above the lowest it has been while the training "
        "loss reaches a new low (marked with a star)."
    )
    page.add(
        "Training against validation, chosen trials",
        "The best trial, the worst trial that trained at least two epochs, and every seed recipe. " + rule,
        has_data=bool(curves),
        figure=lambda: draw_fit_curves(curves),
        table=lambda: table(
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
        ),
    )
    page.add("What a search can say about augmentation", confounded("augmentation", "augmentation"))
    stopped = int(gap["stopped_early"].sum()) if not gap.empty else 0
    equal_epoch = int(gap["equal_epoch"].iloc[0]) if not gap.empty else 0
    page.add(
        "Generalisation gap",
        f"Open triangles: the {stopped} trial(s) ASHA stopped early, whose last epoch came sooner than the others'. "
        "train_acc − val_acc at each trial's last epoch, against the number of augmentation ops on "
        f"({', '.join(AUGMENT_OPS.values())}), the model's parameter count and the epochs it trained. "
        "Training accuracy is measured on augmented images while the model is still learning, so a negative gap "
        "is possible.",
        has_data=not gap.empty,
        figure=lambda: draw_gap(gap),
    )
    page.add(
        "Generalisation gap at equal training",
        f"train_acc − val_acc of every trial at epoch {equal_epoch}, the furthest epoch all of them reached (with "
        "ASHA, the furthest rung every trial reached): the same number of training images behind each point.",
        has_data=equal_epoch > 0,
        figure=lambda: draw_gap(gap, equal=True),
    )
    turned = gap.dropna(subset=["turn_epoch"]) if not gap.empty else gap
    page.add(
        "Turn-up epoch of every trial",
        rule + f" {len(turned)} of {len(gap)} trial(s) turned up.",
        has_data=not gap.empty,
        table=lambda: table(
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
        ),
    )
    return page
