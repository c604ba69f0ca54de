"""``python -m search.retrain best_config.json [--data DIR] [--epochs N] [--out DIR]``: the final model.

Trains the exported config on train plus validation (the search's validation split has done its job of choosing the
config; the final model gets every labelled image the search could see), then looks at the test split exactly once,
if the data has one, and writes a model directory (see ``search.modeldir``). The number of epochs defaults to the epoch
at which the chosen trial's validation metric peaked during the search.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from runstore.errors import UserError, cli
from search.export import load_best_config, provenance
from search.modeldir import save_model_dir
from trainables.augment import BatchAugment
from trainables.config import TrialConfig
from trainables.data import DEMO_DATA, DataCatalog, ImageSplit, channel_stats
from trainables.index import has_test_split
from trainables.scoring import score
from trainables.train import evaluate, pick_device, train_trial

__all__ = ["main", "retrain"]

log = logging.getLogger("search.retrain")


def retrain(
    best_config: str | Path,
    data: str | None = None,
    epochs: int | None = None,
    out: str | Path | None = None,
    device: str | None = None,
) -> Path:
    """Train the final model and return its directory."""
    doc = load_best_config(best_config)
    try:
        config = TrialConfig.from_dict(doc["config"])
    except ValueError as exc:
        raise UserError(f"{best_config}: config does not validate: {exc}") from exc
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {epochs}")
        config = dataclasses.replace(config, epochs=epochs)
    task = doc.get("task") or "pneumonia3class"
    data_info = doc.get("data") or {}
    catalog = DataCatalog(
        data,
        task,
        val_fraction=float(data_info.get("val_fraction") or 0.2),
        split_seed=int(data_info.get("split_seed") or 0),
        include_test=has_test_split(Path(data) if data else DEMO_DATA),
    )
    prepared = catalog.prepare(config.image_spec)
    both = ImageSplit(
        np.concatenate([prepared.train.x, prepared.val.x]), np.concatenate([prepared.train.y, prepared.val.y])
    )
    final_data = dataclasses.replace(prepared, train=both, val=ImageSplit(both.x[:0], both.y[:0]))
    # Normalisation statistics of everything the model trains on.
    mean, std = channel_stats(both.x)
    final_data = dataclasses.replace(final_data, mean=mean, std=std)
    log.info("retraining %s on %d images (train + validation) for %d epochs", config.model, len(both), config.epochs)
    t0 = time.perf_counter()
    result = train_trial(
        config,
        final_data,
        validate=False,
        device=device,
        reporter=lambda m, _s: log.info(
            "epoch %d train_loss %.4f train_acc %.4f", m["epoch"], m["train_loss"], m["train_acc"]
        ),
    )
    train_seconds = time.perf_counter() - t0

    metrics: dict[str, object] = {
        "trained_on": {"images": len(both), "classes": list(prepared.classes), "epochs": config.epochs},
        "train_seconds": train_seconds,
        "data": catalog.describe(),
        "source": {"best_config": str(Path(best_config).resolve()), "validation": doc.get("validation")},
        "provenance": provenance(),
    }
    if prepared.test is not None and len(prepared.test):
        mean_std = final_data.normalisation(config.pretrained)
        prep = BatchAugment(config.augment, *mean_std, device=pick_device(device))
        _, probs, y = evaluate(result.model, prepared.test, prep, len(prepared.classes))
        metrics["test"] = score(y.numpy(), probs.numpy(), prepared.classes)
        t = metrics["test"]
        log.info(
            "test split (looked at once): accuracy %.4f [%.4f, %.4f], balanced accuracy %.4f, AUROC %.4f",
            t["accuracy"]["value"],
            *t["accuracy"]["ci95"],
            t["balanced_accuracy"]["value"],
            t["auroc"]["value"],
        )
    else:
        metrics["test"] = None
        log.info("the data has no test split: no test figures; score the model later with search.evaluate")

    name = re.sub(
        r"[^A-Za-z0-9_.-]+", "-", f"{doc.get('space') or task}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out_dir = Path(out) if out else Path("models") / name
    save_model_dir(
        out_dir,
        result.model,
        config,
        prepared.classes,
        *final_data.normalisation(config.pretrained),
        task=task,
        extra=metrics,
    )
    return out_dir


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.retrain", description=__doc__.splitlines()[0])
    p.add_argument("best_config", help="best_config.json written by search.run / search.export")
    p.add_argument("--data", help="data folder (default: the bundled demo set)")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the best trial's best epoch)")
    p.add_argument("--out", help="model directory to write (default: models/<space>-<model>-<time>)")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    if args.data and not Path(args.data).expanduser().is_dir():
        raise UserError(f"--data: {args.data} is not a directory")
    out = retrain(args.best_config, args.data, args.epochs, args.out, args.device)
    test = json.loads((out / "metrics.json").read_text()).get("test")
    summary = {"model_dir": str(out)}
    if test:
        summary |= {k: test[k]["value"] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
