"""Checks of the JSON files the commands read back (best_config.json, a model folder's config, labels and
preprocessing), so a damaged or hand-edited file is one ``error:`` line naming the file and the key, before any image
is decoded or any weight loaded, never a ``KeyError`` traceback.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search.errors import UserError
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.index import TASKS

__all__ = ["check_best_config", "check_model_files"]


def check_best_config(doc: dict[str, Any], path: Path) -> None:
    """The fields of a best_config.json that retrain reads besides ``config``: task and the split it came from."""
    task = doc.get("task")
    if task is not None and task not in TASKS:
        raise UserError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    data = doc.get("data")
    if data is None:
        return
    if not isinstance(data, dict):
        raise UserError(f"{path}: data must be an object (root, fingerprint, val_fraction, split_seed), got {data!r}")
    fraction, seed = data.get("val_fraction"), data.get("split_seed")
    if fraction is not None and not (_number(fraction) and 0 < fraction < 1):
        raise UserError(f"{path}: data.val_fraction must be a number between 0 and 1, got {fraction!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UserError(f"{path}: data.split_seed must be a whole number >= 0, got {seed!r}")
    try:
        TrialConfig.from_dict(doc["config"])
    except ValueError as exc:
        raise UserError(f"{path}: config does not validate: {exc}") from exc


def check_model_files(path: Path, meta: Any, labels: Any, prep: Any) -> None:
    """config.json, labels.json and preprocessing.json of a model folder, each checked before the model is built."""
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise UserError(f'{path / "config.json"}: expected an object with a "config" object')
    try:
        TrialConfig.from_dict({**meta["config"], "pretrained": False})
    except ValueError as exc:
        raise UserError(f"{path / 'config.json'}: config does not validate: {exc}") from exc
    task = meta.get("task")
    if task is not None and task not in TASKS:
        raise UserError(f"{path / 'config.json'}: task {task!r} is not one of {', '.join(TASKS)}")
    where = path / "labels.json"
    if not isinstance(labels, dict) or len(labels) < 2:
        raise UserError(f'{where}: expected an object of at least two classes, {{"0": "NORMAL", "1": ...}}')
    if sorted(labels) != sorted(str(i) for i in range(len(labels))):
        raise UserError(f"{where}: keys must be the class indices 0..{len(labels) - 1}, got {', '.join(labels)}")
    names = list(labels.values())
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise UserError(f"{where}: class names must be distinct, non-empty text, got {names!r}")
    where = path / "preprocessing.json"
    if not isinstance(prep, dict):
        raise UserError(f"{where}: expected an object (height, width, channels, resize, mean, std)")
    missing = [k for k in ("height", "width", "channels", "resize", "mean", "std") if k not in prep]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    for key in ("height", "width", "channels"):
        if isinstance(prep[key], bool) or not isinstance(prep[key], int):
            raise UserError(f"{where}: {key} must be a whole number, got {prep[key]!r}")
    try:
        ImageSpec(prep["height"], prep["width"], prep["channels"], prep["resize"])
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from exc
    for key in ("mean", "std"):
        values = prep[key]
        if not isinstance(values, list) or len(values) != prep["channels"] or not all(map(_number, values)):
            raise UserError(f"{where}: {key} must be {prep['channels']} finite number(s), got {values!r}")
    if not all(v > 0 for v in prep["std"]):
        raise UserError(f"{where}: std must be > 0, got {prep['std']!r}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
