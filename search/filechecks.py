"""Checks of the JSON files the commands read back (best_config.json, a model folder's config, labels and
preprocessing), so a damaged or hand-edited file is one ``error:`` line naming the file and the key, before any image
is decoded or any weight loaded, never a ``KeyError`` traceback.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runstore.errors import UserError
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.ensemble import TTA_MODES
from trainables.index import TASKS
from trainables.intensity import INTENSITY

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
    """config.json, labels.json and preprocessing.json of a model folder (format v1 or v2), each checked before the
    model is built."""
    where = path / "config.json"
    v2 = isinstance(meta, dict) and meta.get("format") == "cxr-search/model/v2"
    if v2:
        configs = meta.get("members")
        if not isinstance(configs, list) or not configs or not all(isinstance(c, dict) for c in configs):
            raise UserError(f'{where}: expected "members", a non-empty list of trial configs')
        if meta.get("tta") not in TTA_MODES:
            raise UserError(f"{where}: tta must be one of {', '.join(TTA_MODES)}, got {meta.get('tta')!r}")
        t = meta.get("temperature")
        if not (_number(t) and t > 0):
            raise UserError(f"{where}: temperature must be a positive number, got {t!r}")
        decision = meta.get("decision")
        if not isinstance(decision, dict) or not isinstance(decision.get("weights"), list):
            raise UserError(f'{where}: expected "decision" with a list of "weights"')
    elif isinstance(meta, dict) and isinstance(meta.get("config"), dict):
        configs = [meta["config"]]
    else:
        raise UserError(f'{where}: expected an object with a "config" object')
    for c in configs:
        try:
            TrialConfig.from_dict({**c, "pretrained": False})
        except ValueError as exc:
            raise UserError(f"{where}: config does not validate: {exc}") from exc
    task = meta.get("task")
    if task is not None and task not in TASKS:
        raise UserError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
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
        raise UserError(f"{where}: expected an object (height, width, channels, resize, ...)")
    _check_spec(prep, where, ("height", "width", "channels", "resize") if v2 else _V1_KEYS)
    if not v2:
        _check_stats(prep, where)
        return
    members = prep.get("members")
    if not isinstance(members, list) or len(members) != len(configs) or not all(isinstance(m, dict) for m in members):
        raise UserError(f'{where}: expected "members", one object per member in config.json ({len(configs)})')
    for i, m in enumerate(members):
        at = f"{where} (member {i})"
        _check_spec({**m, "resize": prep["resize"]}, at, ("height", "width", "channels", "intensity", "mean", "std"))
        if m["intensity"] not in INTENSITY:
            raise UserError(f"{at}: intensity must be one of {', '.join(INTENSITY)}, got {m['intensity']!r}")
        _check_stats(m, at)


_V1_KEYS = ("height", "width", "channels", "resize", "mean", "std")


def _check_spec(prep: dict[str, Any], where: Any, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in prep]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    for key in ("height", "width", "channels"):
        if isinstance(prep[key], bool) or not isinstance(prep[key], int):
            raise UserError(f"{where}: {key} must be a whole number, got {prep[key]!r}")
    try:
        ImageSpec(prep["height"], prep["width"], prep["channels"], prep["resize"])
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from exc


def _check_stats(prep: dict[str, Any], where: Any) -> None:
    for key in ("mean", "std"):
        values = prep[key]
        if not isinstance(values, list) or len(values) != prep["channels"] or not all(map(_number, values)):
            raise UserError(f"{where}: {key} must be {prep['channels']} finite number(s), got {values!r}")
    if not all(v > 0 for v in prep["std"]):
        raise UserError(f"{where}: std must be > 0, got {prep['std']!r}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
