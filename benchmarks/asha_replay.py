"""Replay ASHA's decisions offline over a finished FIFO run: which rung signal keeps the eventual best trial?

A FIFO run (``python benchmarks/asha.py --out DIR`` keeps one in ``DIR/asha-bench-fifo``, or any
``search.run --scheduler fifo`` run) holds every epoch of every trial. Feeding those results, in the order and at the
pace the trials ran, to Ray Tune's own ASHA bracket (``ray.tune.schedulers.async_hyperband._Bracket``) shows what
ASHA would have stopped, without training anything; so rung signals and grace periods can be compared on the *same*
learning curves, free of the noise of the machine. This is a design aid: the figures that count come from
``benchmarks/asha.py``, which trains both arms for real.

    python benchmarks/asha_replay.py DIR/asha-bench-fifo            # every signal, grace 1, reduction factor 4

Prints how well each signal at epochs 1 and 2 ranks the trials by their final best balanced accuracy (Spearman),
then one line per (signal, grace period): epochs trained, the best val_balanced_acc among the epochs ASHA would
have trained, and the ratio and gap against the FIFO run itself, in the form ``benchmarks/asha.py`` prints last.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from dataclasses import dataclass

import pandas as pd
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from runstore.metrics import METRICS, metric_mode
from runstore.trials import load_trials

#: Rung signals (the metrics search.run accepts) and their sign: Ray's bracket keeps the larger values, so minimised
#: metrics are negated.
SIGNALS: dict[str, float] = {m: -1.0 if metric_mode(m) == "min" else 1.0 for m in METRICS}


@dataclass
class _Trial:
    trial_id: str


def replay(
    curves: dict[str, pd.DataFrame],
    order: list[str],
    signal: str,
    grace: int,
    reduction: int,
    max_t: int,
    concurrency: int,
) -> dict[str, float]:
    """ASHA over recorded learning curves: ``concurrency`` workers take trials in ``order``; each epoch lasts as long
    as it did in the recorded run. Returns epochs trained and the best val_balanced_acc ASHA would have seen."""
    sign = SIGNALS[signal]
    bracket = _Bracket(min_t=grace, max_t=max_t, reduction_factor=reduction, s=0)
    queue = list(order)
    events: list[tuple[float, int, str, int]] = []  # (time, tie-break, trial, epoch just finished)
    seq = 0

    def start(now: float) -> None:
        nonlocal seq
        if queue:
            tid = queue.pop(0)
            heapq.heappush(events, (now + float(curves[tid]["time_this_iter_s"].iloc[0]), seq, tid, 1))
            seq += 1

    for _ in range(concurrency):
        start(0.0)
    epochs, best = 0, float("-inf")
    while events:
        now, _, tid, epoch = heapq.heappop(events)
        row = curves[tid].iloc[epoch - 1]
        epochs += 1
        best = max(best, float(row["val_balanced_acc"]))
        value = sign * float(row[signal])
        action = bracket.on_result(_Trial(tid), epoch, value)
        if action == TrialScheduler.STOP or epoch >= min(max_t, len(curves[tid])):
            start(now)
        else:
            heapq.heappush(events, (now + float(curves[tid]["time_this_iter_s"].iloc[epoch]), seq, tid, epoch + 1))
            seq += 1
    return {"epochs": epochs, "best": best}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fifo_run", help="a finished FIFO run directory (every trial trained to the end)")
    p.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated rung signals to compare")
    p.add_argument("--grace-periods", default="1", help="comma-separated grace periods")
    p.add_argument("--reduction-factor", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)
    trials = load_trials(args.fifo_run).dropna(subset=["epoch"])
    curves = {tid: df.sort_values("epoch").reset_index(drop=True) for tid, df in trials.groupby("trial_id")}
    order = sorted(curves, key=lambda t: int(curves[t]["order"].iloc[0]))  # the order the trials were started in
    max_t = int(max(len(df) for df in curves.values()))
    fifo_epochs = sum(len(df) for df in curves.values())
    fifo_best = float(trials["val_balanced_acc"].max())
    print(f"fifo trials={len(curves)} epochs_trained={fifo_epochs} best_val_balanced_acc={fifo_best:.4f}")
    # How well each signal at an early epoch ranks the trials by how good they end up (Spearman; 1 = perfectly).
    final = trials.groupby("trial_id")["val_balanced_acc"].max()
    for epoch in (1, 2):
        at = trials[trials["epoch"] == epoch].set_index("trial_id")
        if len(at) < 3:
            continue
        corr = {
            name: (sign * at[name]).corr(final[at.index], method="spearman")
            for name, sign in SIGNALS.items()
            if name in at
        }
        print(f"rank_corr epoch={epoch} " + " ".join(f"{name}={v:.2f}" for name, v in corr.items()))
    for grace in (int(g) for g in args.grace_periods.split(",")):
        for signal in args.signals.split(","):
            if signal not in SIGNALS:
                p.error(f"--signals: unknown signal {signal!r}; valid: {', '.join(SIGNALS)}")
            if signal not in trials:
                p.error(f"--signals: {args.fifo_run} has no {signal} column")
            r = replay(curves, order, signal, grace, args.reduction_factor, max_t, args.concurrency)
            print(
                f"asha signal={signal:16s} grace={grace} epochs_trained={r['epochs']:3d} "
                f"best_val_balanced_acc={r['best']:.4f} epochs_ratio={r['epochs'] / fifo_epochs:.2f} "
                f"best_metric_gap={fifo_best - r['best']:.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
