"""A saved final model: member weights, TorchScript, configs, label map, preprocessing, decision rule, metrics.

::

    models/<name>/
        members/<i>/weights.pt   each member's state dict (loaded with weights_only=True: no code runs on load)
        model.torchscript        uint8 N x C x H x W in -> class probabilities out (format v2; v1 gave logits), with
                                 every member's resizing, intensity standardisation, normalisation, test-time
                                 augmentation and the calibration temperature inside (loading a TorchScript file runs
                                 its graph, so only load ones you trust)
        config.json              format, task, each member's TrialConfig, tta, temperature, decision rule
        labels.json              class index -> name
        preprocessing.json       input size, channels, resize policy; each member's size, intensity, mean/std
        metrics.json             held-out and test scores with 95% bootstrap intervals, calibration

The directory is written beside its final place and renamed into it, so an interrupted retrain leaves nothing half
written. Version 1 directories (one network, ``weights.pt`` at the top, logits out) still load and evaluate.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runstore.errors import UserError
from search.filechecks import check_model_files
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.ensemble import FinalModel, Member
from trainables.models import create_model

__all__ = ["FORMAT", "FORMATS", "LoadedModel", "load_model_dir", "save_model_dir"]

FORMAT = "cxr-search/model/v2"
FORMATS = ("cxr-search/model/v1", FORMAT)
_FILES = ("config.json", "labels.json", "preprocessing.json")


@dataclass
class LoadedModel:
    """A final model rebuilt from its directory: the module, what it expects, and how it decides."""

    model: FinalModel
    configs: list[TrialConfig]
    classes: tuple[str, ...]
    spec: ImageSpec
    task: str
    decision_weights: np.ndarray
    format: str

    @property
    def config(self) -> TrialConfig:
        """The first (best-ranked) member's config."""
        return self.configs[0]


def save_model_dir(
    out: Path,
    model: FinalModel,
    configs: list[TrialConfig],
    classes: tuple[str, ...],
    spec: ImageSpec,
    task: str,
    decision_weights: np.ndarray | list[float],
    decision_rule: str,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` to ``out`` atomically (a temporary sibling folder, then a rename); an existing ``out`` is
    refused unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"--out: {out} already exists; choose another folder or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a retrain killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        model = model.eval().cpu().float()
        members = []
        for i, (member, cfg) in enumerate(zip(model.members, configs)):
            (tmp / "members" / str(i)).mkdir(parents=True)
            torch.save(member.net.state_dict(), tmp / "members" / str(i) / "weights.pt")
            members.append(
                {
                    "height": member.size[0],
                    "width": member.size[1],
                    "channels": member.channels,
                    "intensity": member.intensity,
                    "mean": member.mean.flatten().tolist(),
                    "std": member.std.flatten().tolist(),
                    "config": cfg.to_dict(),
                }
            )
        meta = {
            "format": FORMAT,
            "task": task,
            "members": [m["config"] for m in members],
            "tta": model.members[0].tta,
            "temperature": float(model.temperature),
            "decision": {"rule": decision_rule, "weights": [float(w) for w in decision_weights]},
        }
        _write_json(tmp / "config.json", meta)
        _write_json(tmp / "labels.json", {str(i): c for i, c in enumerate(classes)})
        prep = {
            "height": spec.height,
            "width": spec.width,
            "channels": spec.channels,
            "resize": spec.resize,
            "input": "uint8 N x C x H x W at this size, channels and resize policy (model.torchscript)",
            "output": "class probabilities (calibrated); predicted class = argmax(probabilities x decision weights)",
            "members": [{k: v for k, v in m.items() if k != "config"} for m in members],
        }
        _write_json(tmp / "preprocessing.json", prep)
        example = torch.zeros(1, spec.channels, spec.height, spec.width, dtype=torch.uint8)
        with torch.no_grad(), warnings.catch_warnings():
            # TinyVGG checks its input size in Python; the trace fixes it to this size, which is the intent.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(tmp / "model.torchscript"))
        if extra:
            _write_json(tmp / "metrics.json", extra)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def _net(config: TrialConfig, channels: int, classes: int, size: tuple[int, int], weights: Path) -> torch.nn.Module:
    if not weights.is_file():
        raise UserError(f"{weights}: missing; the model directory is incomplete")
    net = create_model(
        config.model,
        in_channels=channels,
        num_classes=classes,
        image_size=size,
        **{k: v for k, v in config.model_kwargs().items() if k != "pretrained"},
    )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # a tampered or truncated file: say which (one line), never run it
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "mismatch" in ln), lines[0] if lines else "")
        reason = f"{type(exc).__name__}: {first[:200]}"
        raise UserError(f"{weights}: not the state dict a {config.model} of this config needs ({reason})") from exc
    return net.eval()


def load_model_dir(path: str | Path) -> LoadedModel:
    """Rebuild a saved model from its configs and state dicts (no pickle of code, no download)."""
    path = Path(path)
    missing = [f for f in _FILES if not (path / f).is_file()]
    if not path.is_dir() or missing:
        raise UserError(
            f"{path}: not a model directory written by search.retrain (missing {', '.join(missing) or path})"
        )
    meta = _read_json(path / "config.json")
    labels = _read_json(path / "labels.json")
    prep = _read_json(path / "preprocessing.json")
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise UserError(f"{path}/config.json: not written by search.retrain (expected format {FORMAT})")
    check_model_files(path, meta, labels, prep)
    try:
        classes = tuple(labels[str(i)] for i in range(len(labels)))
        spec = ImageSpec(prep["height"], prep["width"], prep["channels"], prep["resize"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: labels.json or preprocessing.json is not ours ({exc})") from exc
    try:
        if meta["format"] == FORMAT:
            configs = [TrialConfig.from_dict({**c, "pretrained": False}) for c in meta["members"]]
            members = []
            for i, (cfg, mp) in enumerate(zip(configs, prep["members"])):
                size = (int(mp["height"]), int(mp["width"]))
                net = _net(cfg, int(mp["channels"]), len(classes), size, path / "members" / str(i) / "weights.pt")
                members.append(
                    Member(net, size, mp["channels"], mp["intensity"], tuple(mp["mean"]), tuple(mp["std"]), meta["tta"])
                )
            final = FinalModel(members, float(meta["temperature"]))
            weights = np.asarray(meta["decision"]["weights"], dtype=np.float64)
        else:  # v1: one network, logits out, plain argmax
            configs = [TrialConfig.from_dict({**meta["config"], "pretrained": False})]
            net = _net(configs[0], spec.channels, len(classes), spec.size, path / "weights.pt")
            member = Member(net, spec.size, spec.channels, "none", tuple(prep["mean"]), tuple(prep["std"]))
            final = FinalModel([member])
            weights = np.ones(len(classes))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: config.json or preprocessing.json does not describe a model ({exc})") from exc
    if len(weights) != len(classes) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise UserError(f"{path}/config.json: decision weights must be {len(classes)} positive numbers")
    return LoadedModel(final.eval(), configs, classes, spec, meta.get("task", ""), weights, meta["format"])
