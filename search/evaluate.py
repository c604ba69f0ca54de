"""``python -m search.evaluate MODEL_DIR --data DIR``: score a saved model on any labelled folder.

A Kaggle-layout folder is scored on its ``test/`` split (and must have one); a folder of class sub-folders is scored on
every image in it, e.g. X-rays from another hospital. Labels follow the model's task: for the 3-class task the
pneumonia subtype comes from file names. Prints JSON: accuracy, balanced accuracy, macro-F1, AUROC, per-class recall
and precision, the confusion matrix, each with a 95% bootstrap interval, and the calibration (expected calibration
error and the reliability curve). Decisions follow the model's own rule (``decision`` in its config.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runstore.errors import UserError, cli
from search.modeldir import load_model_dir
from trainables.cache import load_images
from trainables.ensemble import predict
from trainables.index import has_test_split, index_dataset, is_kaggle_layout
from trainables.scoring import score
from trainables.train import pick_device

__all__ = ["evaluate_model_dir", "main"]


def evaluate_model_dir(
    model_dir: str | Path, data: str | Path, *, n_boot: int = 1000, device: str | None = None
) -> dict[str, Any]:
    loaded = load_model_dir(model_dir)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"--data: {root} is not a directory")
    kaggle = is_kaggle_layout(root)
    if kaggle and not has_test_split(root):
        raise UserError(
            f"--data: {root} has the Kaggle layout but no test/ folder; evaluate scores test/ (or a folder of class "
            "sub-folders), never the images a model may have trained on"
        )
    index = index_dataset(root, loaded.task or "folders", split="test" if kaggle else "pool")
    if index.ignored_folders:
        raise UserError(
            f"--data: {root} has class folder(s) {', '.join(index.ignored_folders)} that the model does not know; "
            f"it predicts {', '.join(loaded.classes)}"
        )
    if tuple(c.upper() for c in index.classes) != tuple(c.upper() for c in loaded.classes):
        raise UserError(
            f"--data: {root} has classes {', '.join(index.classes)} but the model predicts {', '.join(loaded.classes)}"
        )
    decoded = load_images(index.paths, index.hashes, loaded.spec)
    dev = pick_device(device)
    probs = predict(loaded.model.eval().to(dev), decoded.array, device=dev)
    y = index.labels[decoded.ok]
    out = score(y, probs.numpy(), loaded.classes, n_boot=n_boot, decision_weights=loaded.decision_weights)
    broken = index.unreadable + decoded.broken
    out["data"] = {"root": str(root), "split": "test" if kaggle else "all", "skipped_broken": broken}
    out["model_dir"] = str(Path(model_dir))
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model_dir", help="a model directory written by search.retrain")
    p.add_argument("--data", required=True, help="Kaggle-layout folder with test/, or a folder of class sub-folders")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    args = p.parse_args(argv)
    if args.bootstrap < 10:
        raise UserError(f"--bootstrap must be >= 10, got {args.bootstrap}")
    print(
        json.dumps(evaluate_model_dir(args.model_dir, args.data, n_boot=args.bootstrap, device=args.device), indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
