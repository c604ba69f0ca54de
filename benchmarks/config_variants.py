"""Which changes to a config raise its validation score? Named variants of a base config, trained over seeds.

A controlled comparison: every variant trains on the same data and validation split, for the same epochs, with the
same seeds; only the named keys differ. The split is ``--split-seed``'s (0 by default) for every seed, while a search
draws its split from its ``--seed`` (``search.run``): ``--split-seed same`` follows the seed as a search does. Each
run is ``trainables.train.train_trial`` in its own process with one torch thread (``--workers`` at once, as a CPU
search runs its trials). Per variant: the best epoch's validation
balanced accuracy (what a search ranks and the search-quality benchmark counts) and the last epoch's, as mean and
95% t-interval over the seeds, and the seconds per epoch; and each variant's difference from the first one, seed
by seed (paired), with its interval.

    python benchmarks/config_variants.py --base model=tinyvgg image_size=64 hflip=0.5 trivial_augment=true \\
        --variant cw class_weights=balanced --variant cos schedule=cosine --seeds 0,1,2 --epochs 12

``--variant NAME key=value ...`` may be repeated; the base itself is always the first variant (``base``).
``--out FILE`` keeps every epoch as JSON lines (a rerun with the same file skips the runs already in it);
``--curves`` adds each variant's mean score at every epoch (how fast it gets there, not only where).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from reports.studydata import t_interval
from trainables.trial import parse_assignments

SCORE = "val_balanced_acc"


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t interval (``reports.studydata.t_interval``; NaN for fewer than 2 values)."""
    iv = t_interval(values)
    return iv.mean, iv.high - iv.mean


def _train(job: dict[str, Any]) -> list[dict[str, Any]]:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from runstore.metrics import EPOCH_SECONDS
    from trainables.config import TrialConfig
    from trainables.data import DataCatalog
    from trainables.train import train_trial

    epochs: list[dict[str, Any]] = []
    catalog = DataCatalog(job["data"], job["task"], split_seed=job["split_seed"])
    config = TrialConfig.from_dict(job["config"])
    train_trial(config, catalog, reporter=lambda metrics, state: epochs.append(dict(metrics)), device="cpu")
    return [
        {
            "variant": job["variant"],
            "seed": config.seed,
            "epoch": m["epoch"],
            SCORE: m[SCORE],
            "seconds": m[EPOCH_SECONDS],
        }
        for m in epochs
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", nargs="+", default=[], metavar="key=value", help="the base config")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME key=value", help="a variant")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", help="data folder (default: the bundled demo set)")
    p.add_argument("--task", default="pneumonia3class")
    p.add_argument("--split-seed", default="0", help="validation split's seed, or 'same' (each run's own seed)")
    p.add_argument("--out", help="JSON-lines file of every epoch (kept runs are not trained again)")
    p.add_argument("--curves", action="store_true", help="also print each variant's mean score at every epoch")
    args = p.parse_args(argv)

    base = parse_assignments(args.base)
    variants = {"base": base}
    for spec in args.variant:
        name, *pairs = spec
        if "=" in name or name in variants:
            p.error(f"--variant: the first word must be a new name, got {name!r}")
        variants[name] = {**base, **parse_assignments(pairs)}
    seeds = [int(s) for s in args.seeds.split(",")]

    rows: list[dict[str, Any]] = []
    out = Path(args.out) if args.out else None
    if out and out.exists():
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    done = {(r["variant"], r["seed"]) for r in rows}
    jobs = [
        {
            "variant": name,
            "data": args.data,
            "task": args.task,
            "split_seed": seed if args.split_seed == "same" else int(args.split_seed),
            "config": {**cfg, "epochs": args.epochs, "seed": seed},
        }
        for seed in seeds
        for name, cfg in variants.items()
        if (name, seed) not in done
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(_train, jobs):
            rows.extend(result)
            if out:
                with out.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in result)
            r = result[-1]
            best = max(x[SCORE] for x in result)
            print(f"# {r['variant']} seed={r['seed']} best={best:.3f} last={r[SCORE]:.3f}", flush=True)

    def per_seed(name: str, pick) -> dict[int, float]:
        out_: dict[int, float] = {}
        for seed in seeds:
            curve = [r for r in rows if r["variant"] == name and r["seed"] == seed]
            if curve:
                out_[seed] = pick(curve)
        return out_

    best_of = lambda c: max(r[SCORE] for r in c)  # noqa: E731
    last_of = lambda c: max(c, key=lambda r: r["epoch"])[SCORE]  # noqa: E731
    base_best = per_seed("base", best_of)
    print(f"{'variant':<14} {'best epoch':>18} {'last epoch':>18} {'best - base':>18} {'s/epoch':>8}")
    for name in variants:
        best, last = per_seed(name, best_of), per_seed(name, last_of)
        secs = [r["seconds"] for r in rows if r["variant"] == name and r["seconds"]]
        diff = [best[s] - base_best[s] for s in best if s in base_best]
        b, bh = interval(list(best.values()))
        la, lh = interval(list(last.values()))
        d, dh = interval(diff) if diff else (float("nan"), 0.0)
        spe = statistics.median(secs) if secs else float("nan")
        print(f"{name:<14} {b:>10.3f} +-{bh:.3f} {la:>10.3f} +-{lh:.3f} {d:>+10.3f} +-{dh:.3f} {spe:>8.1f}")
    if args.curves:
        print("mean over seeds by epoch")
        for name in variants:
            by_epoch: dict[int, list[float]] = {}
            for r in rows:
                if r["variant"] == name and r["seed"] in seeds:
                    by_epoch.setdefault(r["epoch"], []).append(r[SCORE])
            print(f"{name:<14} " + " ".join(f"{statistics.mean(v):.3f}" for _, v in sorted(by_epoch.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
