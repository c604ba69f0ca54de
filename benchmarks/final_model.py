"""How the final model's test figures depend on how long it trains, epoch by epoch, over several seeds.

``search.retrain`` trains one config on train + validation for the number of epochs its trial peaked at and looks at
the test split once. This script shows what that single look is worth: it retrains a config exactly as retrain does
(same data, same normalisation), scores the test split after *every* epoch for several seeds, and prints the
accuracy and balanced accuracy per epoch with their spread over seeds. A research tool for choosing defaults (the
search never sees the test split); do not pick a model's epochs from its output.

    python benchmarks/final_model.py                               # seed TinyVGG recipe (cpu), 12 epochs, seeds 0-2
    python benchmarks/final_model.py --set schedule=cosine --set model=resnet18 --epochs 10
    python benchmarks/final_model.py --config runs/<run>/best_config.json

Prints one line per epoch, then last ``best_mean_epoch=E mean_acc=A spread=S`` (S: max - min over seeds there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from spaces.recipes import recipes_for
from trainables.config import TrialConfig
from trainables.data import DataCatalog, ImageSplit, channel_stats
from trainables.train import train_trial


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="Kaggle-layout folder with test/ (default: bundled demo set)")
    p.add_argument("--config", help="a best_config.json (default: the cpu seed TinyVGG recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)

    if args.config:
        with open(args.config) as f:
            base = json.load(f)["config"]
    else:
        base = dict(recipes_for("cpu")[0].config)
    for item in args.set:
        key, _, val = item.partition("=")
        base[key] = _value(val)
    base["epochs"] = args.epochs
    config = TrialConfig.from_dict(base)

    catalog = DataCatalog(args.data, "pneumonia3class", include_test=True)
    prepared = catalog.prepare(config.image_spec)
    both = ImageSplit(
        np.concatenate([prepared.train.x, prepared.val.x]), np.concatenate([prepared.train.y, prepared.val.y])
    )
    mean, std = channel_stats(both.x)
    # The test split stands in the validation slot so train_trial scores it after every epoch.
    data = dataclasses.replace(prepared, train=both, val=prepared.test, mean=mean, std=std)
    print(f"config: {json.dumps(config.to_dict(), sort_keys=True)}")
    print(f"train+val {len(both)} images, test {len(prepared.test)} images, seeds {args.seeds}")

    acc = np.zeros((len(args.seeds), args.epochs))
    bal = np.zeros_like(acc)
    t0 = time.perf_counter()
    for i, seed in enumerate(args.seeds):
        result = train_trial(dataclasses.replace(config, seed=seed), data)
        acc[i] = [m["val_acc"] for m in result.history]
        bal[i] = [m["val_balanced_acc"] for m in result.history]
    for e in range(args.epochs):
        print(
            f"epoch {e + 1:3d}  test_acc mean {acc[:, e].mean():.4f} min {acc[:, e].min():.4f}"
            f" max {acc[:, e].max():.4f}  test_bal_acc mean {bal[:, e].mean():.4f}"
        )
    best = int(acc.mean(0).argmax())
    print(f"seconds {time.perf_counter() - t0:.0f}")
    print(f"best_mean_epoch={best + 1} mean_acc={acc[:, best].mean():.4f} spread={np.ptp(acc[:, best]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
