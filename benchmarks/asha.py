"""Search efficiency of ASHA against no early stopping (FIFO), measured side by side.

Runs the same search twice with the same space, seed, data and number of trials: once with ASHA, once with FIFO
(every trial trains to ``--max-epochs``). Both arms draw their configs from Optuna with every trial a seeded random
start-up trial, so they evaluate *the same configs* and differ only in early stopping. Prints epochs trained, wall
time and the best validation metric of each arm, then last::

    epochs_ratio=X best_metric_gap=Y

X = ASHA's epochs / FIFO's epochs (goal <= 0.33); Y = FIFO's best - ASHA's best (goal <= 0.01).

    python benchmarks/asha.py                      # demo set, 18 trials x 9 epochs, about 30 minutes on 2 cores
    python benchmarks/asha.py --quick              # smoke size, about 5 minutes
    python benchmarks/asha.py --out /tmp/asha      # keep both runs (a new, empty folder), e.g. for asha_replay.py

ASHA runs as ``search.run`` runs it: rungs at grace period x reduction factor^k (default 1 and 4, then 9), trials
compared on ``--rung-metric`` (default ``search.run``'s, val_auroc); the best is always judged on val_balanced_acc.
The FIFO arm does not depend on any ASHA setting and is deterministic here (seeded configs and trials), so
``--arms asha`` re-measures ASHA settings against a FIFO arm kept from an earlier run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from runstore.layout import load_run_info
from runstore.ranking import rank_trials
from runstore.trials import load_trials
from search.run import SearchSettings, run_search


def _arm(scheduler: str, args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    settings = SearchSettings(
        space=args.space,
        data=args.data,
        num_samples=args.num_samples,
        max_epochs=args.max_epochs,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        seed=args.seed,
        storage=str(storage),
        name=f"asha-bench-{scheduler}",
        time_budget_s=0,  # no time budget: both arms run every trial
        recipes=False,
        report=False,
        scheduler=scheduler,
        rung_metric=args.rung_metric,
        startup_trials=args.num_samples,  # all random: both arms see the same configs
        profile="cpu",
    )
    t0 = time.perf_counter()
    run_dir = run_search(settings)
    wall = time.perf_counter() - t0
    trials = load_trials(run_dir)
    summary = rank_trials(trials, "val_balanced_acc")
    epochs = int(trials.groupby("trial_id")["epochs_done"].max().sum())
    rung = load_run_info(run_dir).get("rung_metric", "") if scheduler == "asha" else "-"
    best = float(summary["val_balanced_acc"].max())
    return {"epochs": epochs, "wall_s": wall, "best": best, "trials": len(summary), "rung_metric": rung}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="pneumonia3class")
    p.add_argument("--data", help="data folder (default: bundled demo set)")
    p.add_argument("--num-samples", type=int, default=18)
    p.add_argument("--max-epochs", type=int, default=9)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rung-metric", help="ASHA's rung signal (default: search.run's)")
    p.add_argument("--quick", action="store_true", help="8 trials x 4 epochs")
    p.add_argument("--arms", default="asha,fifo", help="which arms to run (the ratio line needs both)")
    p.add_argument("--out", help="keep both arms' run directories here (default: a temporary directory)")
    args = p.parse_args(argv)
    arms = args.arms.split(",")
    if set(arms) - {"asha", "fifo"} or len(set(arms)) != len(arms):
        p.error(f"--arms: expected asha, fifo or asha,fifo, got {args.arms!r}")
    if args.quick:
        args.num_samples, args.max_epochs, args.reduction_factor = 8, 4, 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out).resolve() if args.out else Path(tmp)
        for scheduler in arms:
            results[scheduler] = _arm(scheduler, args, out)
            ray.shutdown()
    for name, r in results.items():
        print(
            f"{name:4s} trials={r['trials']} epochs_trained={r['epochs']} wall_s={r['wall_s']:.0f} "
            f"best_val_balanced_acc={r['best']:.4f} rung_metric={r['rung_metric']}"
        )
    if set(results) != {"asha", "fifo"}:
        return 0
    ratio = results["asha"]["epochs"] / max(results["fifo"]["epochs"], 1)
    gap = results["fifo"]["best"] - results["asha"]["best"]
    print(f"epochs_ratio={ratio:.2f} best_metric_gap={gap:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
