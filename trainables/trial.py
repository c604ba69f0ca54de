"""Run one trial without Ray: ``python -m trainables.trial [--data DIR] [key=value ...]``.

Useful to check a config by hand before searching over it. Keys are :class:`trainables.config.TrialConfig` fields,
e.g. ``python -m trainables.trial model=resnet18 image_size=96 epochs=3 hflip=0.5``. Prints one JSON line per epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from runstore.errors import UserError, cli
from trainables.config import TrialConfig
from trainables.data import DataCatalog
from trainables.index import TASKS
from trainables.train import NonFiniteLossError, train_trial

__all__ = ["main", "parse_assignments"]


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "hflip=0.5", "model=resnet18"]`` -> a config dict; values are read as JSON when they parse."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        if key in out:
            raise ValueError(f"{key} is given twice ({key}={out[key]!r} and {pair!r}); give each key once")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainables.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="Kaggle-layout or class-folder data set (default: the bundled demo set)")
    parser.add_argument("--task", default="pneumonia3class", choices=list(TASKS))
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the patient-level validation split (default 0); a search draws its split from its --seed, so "
        "pass that seed to score one of its trials on the same validation images",
    )
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("settings", nargs="*", metavar="key=value", help="TrialConfig fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = TrialConfig.from_dict(parse_assignments(args.settings))
        if args.split_seed < 0:
            raise ValueError(f"--split-seed must be >= 0, got {args.split_seed}")
        catalog = DataCatalog(args.data, args.task, val_fraction=args.val_fraction, split_seed=args.split_seed)
    except ValueError as exc:  # a bad key=value or data folder (DataLayoutError is one): the user's to fix
        raise UserError(str(exc)) from exc
    data = {**catalog.describe(), "val_fraction": args.val_fraction, "split_seed": args.split_seed}
    print(json.dumps({"data": data, "config": config.to_dict()}), flush=True)
    try:
        train_trial(
            config, catalog, reporter=lambda metrics, state: print(json.dumps(metrics), flush=True), device=args.device
        )
    except NonFiniteLossError as exc:  # the config diverges (e.g. too high a learning rate): the user's to change
        raise UserError(str(exc)) from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
