"""Which epoch of a trial should count? Selection rules compared over seeds on data the rule never saw.

A search picks each trial's epoch (and ranks trials) by its validation curve: 312 images on the demo set, so a single
epoch's balanced accuracy moves by a few points with nothing but noise, and the best of twelve noisy epochs is an
optimistic number. This benchmark trains the CPU seed recipes exactly as a search trial does (the search's train /
validation split, every epoch reported), scores every epoch on the demo test split as well, and then asks each rule in
``runstore.ranking.SELECTION_RULES`` which epoch counts:

    test at pick   the test balanced accuracy of the epoch the rule picked (higher: a better epoch to stop at, and
                   the epoch count ``search.retrain`` trains the final model for)
    optimism       the value the rule reports minus that test figure (lower: the number a user sees holds up)
    regret         the best test figure over the curve minus the test figure at the pick
    top-1 test     per seed, the test figure of the trial the rule ranks first (the trial ``search.export`` takes)

Paired differences against the ``best`` rule (today's "best single epoch") with 95% t-intervals over curves.
The test split is only measured, never used to pick.

    python benchmarks/selection.py                                   # 3 cpu recipes, seeds 0-2, 12 epochs
    python benchmarks/selection.py --out curves.json                 # also keep every curve
    python benchmarks/selection.py --curves curves.json              # re-score saved curves (no training)

Last line: ``selection default=<rule> test_at_pick=... (best ...) optimism=... (best ...)``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.studydata import t_interval  # noqa: E402
from runstore.ranking import DEFAULT_SELECTION, SELECTION_RULES  # noqa: E402
from spaces.recipes import recipes_for  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import DataCatalog  # noqa: E402
from trainables.ensemble import Member, predict  # noqa: E402
from trainables.models import create_model  # noqa: E402
from trainables.train import train_trial  # noqa: E402

DEFAULT_MEMBERS = ("seed_resnet50_frozen", "seed_tinyvgg", "seed_alexnet_gray")


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    recalls = [float((pred[y == k] == k).mean()) for k in range(num_classes) if (y == k).any()]
    return float(np.mean(recalls))


def train_curve(cfg: TrialConfig, catalog: DataCatalog) -> list[dict[str, float]]:
    """Train ``cfg`` as a search trial does; per epoch its validation metrics and its demo-test balanced accuracy."""
    prepared = catalog.get(cfg.image_spec)
    h, w = cfg.image_spec.size
    mean, std = prepared.normalisation(cfg.pretrained, cfg.intensity)
    net = create_model(
        cfg.model, in_channels=cfg.channels, num_classes=len(prepared.classes), image_size=(h, w), **cfg.model_kwargs()
    )
    test = prepared.test
    curve: list[dict[str, float]] = []

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        net.load_state_dict(copy.deepcopy(state["model"]))
        member = Member(net.eval(), (h, w), cfg.channels, cfg.intensity, mean, std)
        probs = predict(member, test.x).numpy()
        curve.append(
            {
                "epoch": int(metrics["epoch"]),
                "val_balanced_acc": float(metrics["val_balanced_acc"]),
                "val_loss": float(metrics["val_loss"]),
                "train_acc": float(metrics["train_acc"]),
                "test_balanced_acc": _balanced_accuracy(test.y, probs.argmax(1), len(prepared.classes)),
            }
        )

    train_trial(cfg, prepared, reporter=report)
    return curve


def _ci(values: list[float]) -> str:
    return t_interval(values).text("+.4f")


def analyse(curves: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per rule: per curve the picked epoch, test at the pick, optimism and regret; per seed the top-1 trial's test."""
    out: dict[str, dict[str, list[float]]] = {}
    seeds = sorted({c["seed"] for c in curves})
    for name, rule in SELECTION_RULES.items():
        row = out.setdefault(name, {"epoch": [], "test_at_pick": [], "optimism": [], "regret": [], "top1_test": []})
        picks = []
        for c in curves:
            epochs = c["curve"]
            picked = rule(
                {e["epoch"]: e["val_balanced_acc"] for e in epochs},
                "max",
                {e["epoch"]: e["val_loss"] for e in epochs},
            )
            assert picked is not None
            epoch, value = picked
            test_at = next(e["test_balanced_acc"] for e in epochs if e["epoch"] == epoch)
            row["epoch"].append(epoch)
            row["test_at_pick"].append(test_at)
            row["optimism"].append(value - test_at)
            row["regret"].append(max(e["test_balanced_acc"] for e in epochs) - test_at)
            picks.append((c["seed"], value, test_at))
        for s in seeds:
            of_seed = [p for p in picks if p[0] == s]
            row["top1_test"].append(max(of_seed, key=lambda p: p[1])[2])
    return out


def report(curves: list[dict[str, Any]]) -> None:
    figures = analyse(curves)
    base = figures["best"]
    configs, seeds = len({c["config"] for c in curves}), len({c["seed"] for c in curves})
    print(f"{len(curves)} curves ({configs} configs x {seeds} seeds)")
    print(
        "rule | mean epoch | test at pick | optimism | regret | top-1 test | test at pick - best's | optimism - best's"
    )
    for name, row in figures.items():
        d_test = [a - b for a, b in zip(row["test_at_pick"], base["test_at_pick"])]
        d_opt = [a - b for a, b in zip(row["optimism"], base["optimism"])]
        print(
            f"{name} | {np.mean(row['epoch']):.1f} | {_ci(row['test_at_pick'])} | {_ci(row['optimism'])} | "
            f"{_ci(row['regret'])} | {_ci(row['top1_test'])} | {_ci(d_test)} | {_ci(d_opt)}"
        )
    d, b = figures[DEFAULT_SELECTION], base
    print(
        f"selection default={DEFAULT_SELECTION} test_at_pick={np.mean(d['test_at_pick']):.4f} "
        f"(best {np.mean(b['test_at_pick']):.4f}) optimism={np.mean(d['optimism']):.4f} "
        f"(best {np.mean(b['optimism']):.4f})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="Kaggle-layout folder with test/ (default: bundled demo set)")
    p.add_argument("--members", nargs="+", default=list(DEFAULT_MEMBERS), help="cpu recipe names to train")
    p.add_argument("--epochs", type=int, default=12, help="epochs per curve (the CPU search's max_epochs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="write the curves as JSON here (appended to, so runs can be split)")
    p.add_argument("--curves", help="score curves saved by --out instead of training")
    args = p.parse_args(argv)

    if args.curves:
        report(json.loads(Path(args.curves).read_text()))
        return 0
    recipes = {r.name: r.config for r in recipes_for("cpu")}
    unknown = [m for m in args.members if m not in recipes]
    if unknown:
        p.error(f"--members: unknown cpu recipe(s) {', '.join(unknown)}; expected some of {', '.join(recipes)}")
    catalog = DataCatalog(args.data, "pneumonia3class", include_test=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    curves: list[dict[str, Any]] = []
    if args.out and Path(args.out).is_file():
        curves = json.loads(Path(args.out).read_text())
    done = {(c["config"], c["seed"]) for c in curves}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for name in args.members:
            if (name, seed) in done:
                continue
            cfg = dataclasses.replace(TrialConfig.from_dict({**recipes[name], "epochs": args.epochs}), seed=seed)
            curves.append({"config": name, "seed": seed, "curve": train_curve(cfg, catalog)})
            print(f"{name} seed {seed} done, {time.perf_counter() - t0:.0f} s", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(curves, indent=1))
    report(curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
