"""Search efficiency of ASHA against no early stopping (FIFO), measured side by side.

Runs the same search twice with the same space, seed, data and number of trials: once with ASHA, once with FIFO
(every trial trains to ``--max-epochs``). Both arms draw their configs from Optuna with every trial a seeded random
start-up trial, so they evaluate *the same configs* and differ only in early stopping. Prints epochs trained, wall
time and the best validation metric of each arm, then last::

    epochs_ratio=X best_metric_gap=Y

X = ASHA's epochs / FIFO's epochs (goal <= 0.33); Y = FIFO's best - ASHA's best (goal <= 0.01).

    python benchmarks/asha.py                      # demo set, 18 trials x 9 epochs, about 25 minutes on 2 cores
    python benchmarks/asha.py --quick              # smoke size, about 5 minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import ray

from search.run import SearchSettings, run_search
from search.rundir import load_trials, trial_summary


def _arm(scheduler: str, args: argparse.Namespace, storage: Path) -> dict[str, float]:
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
        startup_trials=args.num_samples,  # all random: both arms see the same configs
        profile="cpu",
    )
    t0 = time.perf_counter()
    run_dir = run_search(settings)
    wall = time.perf_counter() - t0
    trials = load_trials(run_dir)
    summary = trial_summary(trials, "val_balanced_acc")
    epochs = int(trials.groupby("trial_id")["epochs_done"].max().sum())
    return {"epochs": epochs, "wall_s": wall, "best": float(summary["val_balanced_acc"].max()), "trials": len(summary)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="pneumonia3class")
    p.add_argument("--data", help="data folder (default: bundled demo set)")
    p.add_argument("--num-samples", type=int, default=18)
    p.add_argument("--max-epochs", type=int, default=9)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="8 trials x 4 epochs")
    args = p.parse_args(argv)
    if args.quick:
        args.num_samples, args.max_epochs, args.reduction_factor = 8, 4, 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scheduler in ("asha", "fifo"):
            results[scheduler] = _arm(scheduler, args, Path(tmp))
            ray.shutdown()
    for name, r in results.items():
        print(
            f"{name:4s} trials={r['trials']} epochs_trained={r['epochs']} wall_s={r['wall_s']:.0f} "
            f"best_val_balanced_acc={r['best']:.4f}"
        )
    ratio = results["asha"]["epochs"] / max(results["fifo"]["epochs"], 1)
    gap = results["fifo"]["best"] - results["asha"]["best"]
    print(f"epochs_ratio={ratio:.2f} best_metric_gap={gap:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
