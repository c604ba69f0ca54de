"""What each part of the final model is worth, measured over seeds: ensembles, TTA, calibration, decisions.

For each seed, the members of a final-model recipe (a best_config.json's ``final.members``, or the cpu seed recipes
by default) are trained once exactly as ``search.retrain`` trains them (train + validation less a patient-level
held-out slice). Every arm below is then built from those same trained networks, so arms differ only in how opinions
are combined, never in training noise:

    single          the best member alone, plain argmax (what retrain built before final models existed)
    single+bal      ... with balanced decisions (argmax of p / class frequency)
    single+cal+bal  ... with a temperature fitted on the held-out slice
    ens2 / ens3     the 2 / 3 best members averaged, calibrated, balanced decisions
    +hflip / +shift the same with test-time augmentation

Each arm is scored on the held-out slice (validation: the figures defaults are chosen on), on the same slice under
synthetic site shifts (gamma 0.6 and 1.6, contrast x0.6, a 90% centre zoom: intensity and framing change the way a
new hospital's films do), and on the demo test split (reported, never used to choose). Means over seeds with 95%
t-intervals. ``--intensity equalize`` retrains every member with that intensity standardisation.

    python benchmarks/final_model.py                              # cpu recipes, seeds 0-2
    python benchmarks/final_model.py --config runs/<run>/best_config.json --seeds 0 1 2
    python benchmarks/final_model.py --members tinyvgg --intensity equalize

Last line: ``default=<arm> val_bal_acc=... test_bal_acc=... (single ...) test_ece=...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.studydata import t_interval  # noqa: E402
from search.final import FinalRecipe  # noqa: E402
from search.retrain import input_spec, train_members  # noqa: E402
from spaces.recipes import recipes_for  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import DataCatalog  # noqa: E402
from trainables.ensemble import (  # noqa: E402
    FinalModel,
    Member,
    balanced_weights,
    calibrate,
    fit_temperature,
    predict,
)
from trainables.scoring import score  # noqa: E402

#: Recipe order when no best_config is given: the CPU default search's usual ranking (README).
DEFAULT_MEMBERS = ("seed_resnet50_frozen", "seed_tinyvgg", "seed_alexnet_gray")
SHIFTS = ("gamma0.6", "gamma1.6", "contrast0.6", "zoom0.9")


def shifted(x: np.ndarray, kind: str) -> np.ndarray:
    """A uint8 batch as another site might produce it: a gamma curve, lower contrast, or a tighter field of view."""
    t = torch.from_numpy(x).float() / 255.0
    if kind.startswith("gamma"):
        t = t.pow(float(kind[5:]))
    elif kind.startswith("contrast"):
        f = float(kind[8:])
        m = t.mean(dim=(1, 2, 3), keepdim=True)
        t = (m + f * (t - m)).clamp(0, 1)
    elif kind.startswith("zoom"):
        h, w = t.shape[-2:]
        ch, cw = round(h * float(kind[4:])), round(w * float(kind[4:]))
        top, left = (h - ch) // 2, (w - cw) // 2
        t = F.interpolate(t[..., top : top + ch, left : left + cw], size=(h, w), mode="bilinear", antialias=True)
    return (t * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _interval(values: list[float]) -> str:
    return t_interval(values).text(".4f")


def _with_tta(m: Member, tta: str) -> Member:
    """The same trained network and input handling, another test-time augmentation."""
    mean, std = tuple(m.mean.flatten().tolist()), tuple(m.std.flatten().tolist())
    return Member(m.net, m.size, m.channels, m.intensity, mean, std, tta)


def _arms(members: list[Member]) -> dict[str, tuple[list[Member], str, bool, bool]]:
    """arm name -> (members, tta, calibrate, balanced)."""
    arms = {
        "single": (members[:1], "none", False, False),
        "single+bal": (members[:1], "none", False, True),
        "single+cal+bal": (members[:1], "none", True, True),
        "single+cal+bal+shift": (members[:1], "shift", True, True),
    }
    for k in range(2, len(members) + 1):
        arms[f"ens{k}+cal+bal"] = (members[:k], "none", True, True)
        arms[f"ens{k}+cal+bal+hflip"] = (members[:k], "hflip", True, True)
        arms[f"ens{k}+cal+bal+shift"] = (members[:k], "shift", True, True)
    return arms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="Kaggle-layout folder with test/ (default: bundled demo set)")
    p.add_argument("--config", help="a best_config.json with final.members (default: cpu seed recipes)")
    p.add_argument("--members", nargs="+", help="recipe names or model names to use as members, best first")
    p.add_argument("--intensity", help="override every member's intensity standardisation")
    p.add_argument("--epochs", type=int, help="override every member's epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="write every per-seed figure as JSON here")
    args = p.parse_args(argv)

    if args.config:
        doc = json.loads(Path(args.config).read_text())
        base = [TrialConfig.from_dict(c) for c in FinalRecipe.from_best_config(doc, args.config).members]
    else:
        recipes = {r.name: r.config for r in recipes_for("cpu")}
        names = args.members or list(DEFAULT_MEMBERS)
        base = []
        for n in names:
            cfg = recipes.get(n) or recipes.get(f"seed_{n}") or {"model": n, "image_size": "64", "channels": 1}
            base.append(TrialConfig.from_dict({**cfg, "epochs": 12 if "resnet" in cfg["model"] else 10}))
    overrides = {k: v for k, v in (("intensity", args.intensity), ("epochs", args.epochs)) if v is not None}
    base = [dataclasses.replace(c, **overrides) for c in base]
    for c in base:
        print(f"member: {c.model} {c.image_spec.label()} epochs {c.epochs} intensity {c.intensity} recipe {c.recipe}")

    recipe = FinalRecipe(members=[c.to_dict() for c in base])
    catalog = DataCatalog(args.data, "pneumonia3class", include_test=True)
    spec = input_spec(base)
    prepared = catalog.prepare(spec)
    fit, held = catalog.holdout_split(spec, recipe.holdout_fraction, recipe.holdout_seed)
    test = prepared.test
    classes = prepared.classes
    weights = balanced_weights(fit.y, len(classes))
    print(f"fit {len(fit)} held-out {len(held)} test {len(test)} images at {spec.label()}; seeds {args.seeds}")

    figures: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        configs = [dataclasses.replace(c, seed=seed) for c in base]
        trained, _ = train_members(configs, prepared, fit, "none")
        for arm, (ms, tta, cal, bal) in _arms(trained).items():
            model = FinalModel([_with_tta(m, tta) for m in ms]).eval()
            w = weights if bal else None
            averaged = predict(model.average, held.x)
            if cal:
                model.temperature.fill_(fit_temperature(averaged, torch.from_numpy(held.y)))
            h = score(held.y, calibrate(averaged, model.temperature).numpy(), classes, n_boot=10, decision_weights=w)
            s = [
                score(held.y, predict(model, shifted(held.x, k)).numpy(), classes, n_boot=10, decision_weights=w)
                for k in SHIFTS
            ]
            t = score(test.y, predict(model, test.x).numpy(), classes, n_boot=10, decision_weights=w)
            row = figures.setdefault(arm, {})
            for key, value in (
                ("val_bal_acc", h["balanced_accuracy"]["value"]),
                ("val_nll", h["calibration"]["nll"]),
                ("val_shifted_bal_acc", float(np.mean([x["balanced_accuracy"]["value"] for x in s]))),
                ("val_shifted_normal_recall", float(np.mean([x["recall"][classes[0]]["value"] for x in s]))),
                ("test_acc", t["accuracy"]["value"]),
                ("test_bal_acc", t["balanced_accuracy"]["value"]),
                ("test_normal_recall", t["recall"][classes[0]]["value"]),
                ("test_ece", t["calibration"]["ece"]),
                ("temperature", float(model.temperature)),
            ):
                row.setdefault(key, []).append(float(value))
        print(f"seed {seed} done, {time.perf_counter() - t0:.0f} s")

    keys = list(next(iter(figures.values())))
    print("arm | " + " | ".join(keys))
    for arm, row in figures.items():
        print(f"{arm} | " + " | ".join(_interval(row[k]) for k in keys))
    if args.out:
        Path(args.out).write_text(json.dumps({"members": [c.to_dict() for c in base], "figures": figures}, indent=2))
    default = _default_arm(recipe, len(base))
    d, single = figures[default], figures["single"]
    print(
        f"default={default} val_bal_acc={np.mean(d['val_bal_acc']):.4f} test_bal_acc={np.mean(d['test_bal_acc']):.4f}"
        f" (single {np.mean(single['test_bal_acc']):.4f}) test_ece={np.mean(d['test_ece']):.4f}"
    )
    return 0


def _default_arm(recipe: FinalRecipe, available: int) -> str:
    k = min(FinalRecipe.DEFAULT_MEMBERS, available)
    name = "single+cal+bal" if k == 1 else f"ens{k}+cal+bal"
    return name + ("" if recipe.tta == "none" else f"+{recipe.tta}")


if __name__ == "__main__":
    sys.exit(main())
