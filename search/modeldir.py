"""A saved model directory: weights, TorchScript, config, label map, preprocessing, metrics.

::

    models/<name>/
        weights.pt          state dict only (loaded with weights_only=True: no code runs on load)
        model.torchscript   uint8 N x C x H x W in -> logits out, normalisation inside (for deployment; loading a
                            TorchScript file runs its graph, so only load ones you trust)
        config.json         the TrialConfig it was trained with
        labels.json         class index -> name
        preprocessing.json  image size, channels, resize policy, normalisation mean/std
        metrics.json        test-split scores with 95% bootstrap intervals (when the data had a test split)
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.errors import UserError
from search.filechecks import check_model_files
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.models import create_model

__all__ = ["FORMAT", "LoadedModel", "load_model_dir", "save_model_dir"]

FORMAT = "cxr-search/model/v1"
_FILES = ("weights.pt", "config.json", "labels.json", "preprocessing.json")


class _Deployable(nn.Module):
    """uint8 images in, logits out: the normalisation travels with the exported graph."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x.float() - self.mean) / self.std)


@dataclass
class LoadedModel:
    model: nn.Module
    config: TrialConfig
    classes: tuple[str, ...]
    spec: ImageSpec
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str


def save_model_dir(
    out: Path,
    model: nn.Module,
    config: TrialConfig,
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    task: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().float()
    torch.save(model.state_dict(), out / "weights.pt")
    spec = config.image_spec
    (out / "config.json").write_text(json.dumps({"format": FORMAT, "config": config.to_dict(), "task": task}, indent=2))
    (out / "labels.json").write_text(json.dumps({str(i): c for i, c in enumerate(classes)}, indent=2))
    prep = {
        "height": spec.height,
        "width": spec.width,
        "channels": spec.channels,
        "resize": spec.resize,
        "mean": list(mean),
        "std": list(std),
        "input": "uint8 N x C x H x W (model.torchscript); weights.pt expects (x/255 - mean) / std",
    }
    (out / "preprocessing.json").write_text(json.dumps(prep, indent=2))
    example = torch.zeros(1, spec.channels, spec.height, spec.width, dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        # TinyVGG checks its input size in Python; the trace fixes it to this size, which is the intent.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_Deployable(model, mean, std).eval(), example, check_trace=False)
    traced.save(str(out / "model.torchscript"))
    if extra:
        (out / "metrics.json").write_text(json.dumps(extra, indent=2))
    return out


def load_model_dir(path: str | Path) -> LoadedModel:
    """Rebuild a saved model from its config and state dict (no pickle of code, no download)."""
    path = Path(path)
    missing = [f for f in _FILES if not (path / f).is_file()]
    if not path.is_dir() or missing:
        raise UserError(
            f"{path}: not a model directory written by search.retrain (missing {', '.join(missing) or path})"
        )
    try:
        meta = json.loads((path / "config.json").read_text())
        labels = json.loads((path / "labels.json").read_text())
        prep = json.loads((path / "preprocessing.json").read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: a model file is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}/config.json: not written by search.retrain (expected format {FORMAT})")
    check_model_files(path, meta, labels, prep)
    config = TrialConfig.from_dict({**meta["config"], "pretrained": False})
    classes = tuple(labels[str(i)] for i in range(len(labels)))
    spec = ImageSpec(prep["height"], prep["width"], prep["channels"], prep["resize"])
    model = create_model(
        config.model,
        in_channels=spec.channels,
        num_classes=len(classes),
        image_size=spec.size,
        **{k: v for k, v in config.model_kwargs().items() if k not in ("pretrained",)},
    )
    try:
        state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # weights_only refuses code; a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path / 'weights.pt'}: not the state dict this config needs ({first[:200]})") from exc
    model.eval()
    return LoadedModel(model, config, classes, spec, tuple(prep["mean"]), tuple(prep["std"]), meta.get("task", ""))
