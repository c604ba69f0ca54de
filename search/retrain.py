"""``python -m search.retrain best_config.json [--data DIR] [--epochs N] [--out DIR]``: the final model.

Builds the final model that ``search.export`` described: each member (a trial's config, trained for the epoch at
which its validation metric peaked) is trained on train plus validation, less a patient-level slice held out to fit
the calibration on; the members' probabilities are averaged (with test-time augmentation if the recipe asks), a
temperature is fitted on the held-out slice, and the decision rule is set. Then the test split, if the data has one,
is looked at exactly once, and the model directory is written (see ``search.modeldir``).
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
from typing import Any

import numpy as np
import torch

from runstore.errors import UserError, cli
from search.export import load_best_config, provenance
from search.final import FinalRecipe
from search.modeldir import save_model_dir
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.data import DEMO_DATA, DataCatalog, ImageSplit, PreparedData, channel_stats
from trainables.ensemble import (
    FinalModel,
    Member,
    adapt_images,
    balanced_weights,
    calibrate,
    fit_temperature,
    predict,
)
from trainables.index import has_test_split
from trainables.scoring import calibration, score
from trainables.train import pick_device, train_trial
from trainables.weights import POLICIES, WeightsRecord, check_policy, ensure_weights

__all__ = ["input_spec", "main", "member_weights", "retrain", "train_members"]

log = logging.getLogger("search.retrain")


def input_spec(configs: list[TrialConfig]) -> ImageSpec:
    """The final model's input: the largest member size (by area), the most channels, the members' resize policy."""
    specs = [c.image_spec for c in configs]
    h, w = max((s.size for s in specs), key=lambda hw: (hw[0] * hw[1], hw))
    return ImageSpec(h, w, max(s.channels for s in specs), specs[0].resize)


def _member_data(prepared: PreparedData, fit: ImageSplit, config: TrialConfig) -> PreparedData:
    """``fit`` as a member trains on it: resized from the input spec exactly as the exported module resizes."""
    spec = config.image_spec
    x = adapt_images(fit.x, spec.size, spec.channels)
    mean, std = channel_stats(x)
    train, empty = ImageSplit(x, fit.y), ImageSplit(x[:0], fit.y[:0])
    return dataclasses.replace(prepared, spec=spec, train=train, val=empty, test=None, mean=mean, std=std)


def member_weights(configs: list[TrialConfig], policy: str) -> tuple[list[TrialConfig], list[WeightsRecord]]:
    """The members' ImageNet weights under ``policy`` (fetched now with ``auto``), and the configs to train.

    ``none`` trains every pretrained member from scratch (``pretrained=False, freeze_backbone=False``, logged). With
    ``auto`` or ``local`` a member whose weights cannot be had is a ``UserError`` before anything trains: the search
    chose that config with the weights, and a silent from-scratch model would be a different one.
    """
    check_policy(policy)
    records = ensure_weights(sorted({c.model for c in configs if c.pretrained}), policy)
    missing = [r.model for r in records if r.source == "none"]
    if policy == "none":
        for i, c in enumerate(configs):
            if c.pretrained:
                log.info("member %d: %s from scratch instead of from ImageNet weights (--weights none)", i + 1, c.model)
        configs = [dataclasses.replace(c, pretrained=False, freeze_backbone=False) for c in configs]
    elif missing:
        raise UserError(
            f"--weights {policy}: no ImageNet weights for {', '.join(missing)}, which the best config trains from; "
            f"fetch them with `python -m trainables.weights fetch {' '.join(missing)}`, or pass --weights none to "
            f"train from scratch"
        )
    for record in records:
        log.info("weights %s", record.describe())
    return configs, records


def train_members(
    configs: list[TrialConfig],
    prepared: PreparedData,
    fit: ImageSplit,
    tta: str,
    device: str | None = None,
) -> tuple[list[Member], list[dict[str, Any]]]:
    """Train each member config on ``fit`` (uint8 at the input spec) and wrap it as a :class:`Member`."""
    members, histories = [], []
    for i, config in enumerate(configs):
        data = _member_data(prepared, fit, config)
        log.info(
            "member %d/%d: %s %s, %d images, %d epochs",
            i + 1,
            len(configs),
            config.model,
            config.image_spec.label(),
            len(fit),
            config.epochs,
        )
        t0 = time.perf_counter()
        result = train_trial(
            config,
            data,
            validate=False,
            device=device,
            reporter=lambda m, _s: log.info(
                "epoch %d train_loss %.4f train_acc %.4f", m["epoch"], m["train_loss"], m["train_acc"]
            ),
        )
        net = result.model.eval().cpu().float().to(memory_format=torch.contiguous_format)
        spec = config.image_spec
        mean, std = result.extra["mean"], result.extra["std"]
        members.append(Member(net, spec.size, spec.channels, config.intensity, mean, std, tta))
        histories.append({"train_seconds": time.perf_counter() - t0, "final_epoch": result.final})
    return members, histories


def retrain(
    best_config: str | Path,
    data: str | None = None,
    epochs: int | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    force: bool = False,
    weights: str = "auto",
) -> Path:
    """Train the final model and return its directory; ``weights`` is the ImageNet weights policy
    (:data:`trainables.weights.POLICIES`)."""
    doc = load_best_config(best_config)
    recipe = FinalRecipe.from_best_config(doc, str(best_config))
    try:
        configs = recipe.configs()
    except ValueError as exc:
        raise UserError(f"{best_config}: config does not validate: {exc}") from exc
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {epochs}")
        configs = [dataclasses.replace(c, epochs=epochs) for c in configs]
    task = doc.get("task") or "pneumonia3class"
    name = re.sub(
        r"[^A-Za-z0-9_.-]+", "-", f"{doc.get('space') or task}-{configs[0].model}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out_dir = Path(out) if out else Path("models") / name
    if out_dir.exists() and not force:
        raise UserError(f"--out: {out_dir} already exists; choose another folder or pass --force to replace it")
    configs, weight_records = member_weights(configs, weights)
    data_info = doc.get("data") or {}
    catalog = DataCatalog(
        data,
        task,
        val_fraction=float(data_info.get("val_fraction") or 0.2),
        split_seed=int(data_info.get("split_seed") or 0),
        include_test=has_test_split(Path(data) if data else DEMO_DATA),
    )
    spec = input_spec(configs)
    prepared = catalog.prepare(spec)
    classes = prepared.classes
    if recipe.holdout_fraction > 0:
        fit, held = catalog.holdout_split(spec, recipe.holdout_fraction, recipe.holdout_seed)
    else:
        fit = ImageSplit(
            np.concatenate([prepared.train.x, prepared.val.x]), np.concatenate([prepared.train.y, prepared.val.y])
        )
        held = ImageSplit(fit.x[:0], fit.y[:0])
    log.info(
        "final model: %d member(s), tta %s, calibration %s, decision %s; %d images to train on, %d held out",
        len(configs),
        recipe.tta,
        recipe.calibration,
        recipe.decision,
        len(fit),
        len(held),
    )
    t0 = time.perf_counter()
    members, histories = train_members(configs, prepared, fit, recipe.tta, device)
    train_seconds = time.perf_counter() - t0
    dev = pick_device(device)
    model = FinalModel(members).eval().to(dev)
    decide = balanced_weights(fit.y, len(classes)) if recipe.decision == "balanced" else np.ones(len(classes))

    metrics: dict[str, Any] = {
        "trained_on": {
            "images": len(fit),
            "held_out": len(held),
            "classes": list(classes),
            "epochs": [c.epochs for c in configs],
        },
        "recipe": recipe.to_doc(),
        "train_seconds": train_seconds,
        "members": histories,
        "weights": {"policy": weights, "models": [dataclasses.asdict(r) for r in weight_records]},
        "data": catalog.describe(),
        "source": {"best_config": str(Path(best_config).resolve()), "validation": doc.get("validation")},
        "provenance": provenance(),
    }
    if len(held):
        averaged = predict(model.average, held.x, device=dev)
        if recipe.calibration == "temperature":
            model.temperature.fill_(fit_temperature(averaged, torch.from_numpy(held.y)))
        probs = calibrate(averaged, model.temperature.cpu())
        metrics["held_out"] = score(held.y, probs.numpy(), classes, decision_weights=decide)
        metrics["held_out"]["uncalibrated"] = calibration(held.y, averaged.numpy())
    metrics["temperature"] = float(model.temperature)
    if prepared.test is not None and len(prepared.test):
        probs = predict(model, prepared.test.x, device=dev)
        metrics["test"] = t = score(prepared.test.y, probs.numpy(), classes, decision_weights=decide)
        log.info(
            "test split (looked at once): accuracy %.4f [%.4f, %.4f], balanced accuracy %.4f, AUROC %.4f, ECE %.4f",
            t["accuracy"]["value"],
            *t["accuracy"]["ci95"],
            t["balanced_accuracy"]["value"],
            t["auroc"]["value"],
            t["calibration"]["ece"],
        )
    else:
        metrics["test"] = None
        log.info("the data has no test split: no test figures; score the model later with search.evaluate")

    save_model_dir(
        out_dir,
        model,
        configs,
        classes,
        spec,
        task=task,
        decision_weights=decide,
        decision_rule=recipe.decision,
        extra=metrics,
        force=force,
    )
    return out_dir


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.retrain", description=__doc__.splitlines()[0])
    p.add_argument("best_config", help="best_config.json written by search.run / search.export")
    p.add_argument("--data", help="data folder (default: the bundled demo set)")
    p.add_argument("--epochs", type=int, help="epochs to train every member (default: each trial's best epoch)")
    p.add_argument("--out", help="model directory to write (default: models/<space>-<model>-<time>)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument(
        "--weights",
        default=POLICIES[0],
        help="ImageNet weights of pretrained members: auto (the torch hub cache, else download), local (the cache "
        "only), none (train them from scratch)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    if args.data and not Path(args.data).expanduser().is_dir():
        raise UserError(f"--data: {args.data} is not a directory")
    out = retrain(args.best_config, args.data, args.epochs, args.out, args.device, args.force, args.weights)
    test = json.loads((out / "metrics.json").read_text()).get("test")
    summary = {"model_dir": str(out)}
    if test:
        summary |= {k: test[k]["value"] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")}
        summary["ece"] = test["calibration"]["ece"]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
