"""What a trial runs: build the model, then per epoch train, validate, report, checkpoint.

The same function runs inside Ray Tune (it reports with ``tune.report(..., checkpoint=...)`` every epoch and resumes
from ``tune.get_checkpoint()``) and in plain Python (tests, ``python -m trainables.trial``). Read top to bottom, one
epoch of ``train_trial`` is: ``_train_epoch`` (batches augmented on the device), validation metrics with torchmetrics,
``_step_schedule`` (the one place the learning rate schedule steps), report and checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)

from runstore.metrics import EPOCH_SECONDS
from trainables.augment import BatchAugment, one_cpu_thread
from trainables.config import TrialConfig
from trainables.data import DataCatalog, ImageSplit, PreparedData
from trainables.ema import WeightAverage, ema_decay
from trainables.models import count_parameters, create_model, set_train_mode

if TYPE_CHECKING:
    from trainables.spec_store import SpecSource

__all__ = [
    "NonFiniteLossError",
    "TrialResult",
    "evaluate",
    "pick_device",
    "train_fn",
    "train_trial",
]

log = logging.getLogger(__name__)

Reporter = Callable[[dict[str, Any], dict[str, Any]], None]
CHECKPOINT_FILE = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the trial cannot continue and ends as failed."""


@dataclass
class TrialResult:
    """What a trial leaves behind outside Tune: the per-epoch metrics and the trained model."""

    config: TrialConfig
    history: list[dict[str, Any]]
    model: nn.Module
    classes: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA, then Apple's MPS, then the CPU; ``prefer`` (e.g. "cpu") overrides."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision where it pays: bf16 on CUDA GPUs that have it, else fp16 on CUDA; none on CPU/MPS."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _make_optimizer(cfg: TrialConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_schedule(cfg: TrialConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.3, patience=1)
    return None


def _class_weights(cfg: TrialConfig, y: np.ndarray, num_classes: int, device: torch.device) -> torch.Tensor | None:
    if cfg.class_weights == "none":
        return None
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = counts.sum() / (num_classes * np.maximum(counts, 1))  # "balanced", as scikit-learn defines it
    return torch.tensor(w, dtype=torch.float32, device=device)


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    # Arrays from Ray's object store are read-only views of shared memory; torch only reads them (we index, which
    # copies the batch), so the "not writable" warning does not apply.
    if not a.flags.writeable:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(a)
    return torch.from_numpy(a)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: ImageSplit,
    prep: BatchAugment,
    num_classes: int,
    *,
    batch_size: int = 256,
    criterion: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Loss and classification metrics of ``model`` on ``split``; also returns the probabilities and labels. The
    batches come in ``prep``'s memory format."""
    device = prep.device
    set_train_mode(model, False)
    x_all, y_all = _as_tensor(split.x), torch.from_numpy(np.asarray(split.y))
    probs, total_loss = [], 0.0
    criterion = criterion or nn.CrossEntropyLoss()
    for i in range(0, len(split), batch_size):
        xb = prep(x_all[i : i + batch_size], train=False)
        yb = y_all[i : i + batch_size].to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(xb)
        total_loss += float(criterion(logits.float(), yb)) * len(yb)
        probs.append(logits.float().softmax(1).cpu())
    p = torch.cat(probs) if probs else torch.zeros(0, num_classes)
    y = y_all
    metrics = {
        "loss": total_loss / max(len(split), 1),
        "acc": float(MulticlassAccuracy(num_classes, average="micro")(p, y)),
        "balanced_acc": float(MulticlassRecall(num_classes, average="macro")(p, y)),
        "macro_f1": float(MulticlassF1Score(num_classes, average="macro")(p, y)),
        "auroc": float(MulticlassAUROC(num_classes, average="macro")(p, y)),
    }
    recall = MulticlassRecall(num_classes, average=None)(p, y)
    for k, r in enumerate(recall.tolist()):
        metrics[f"recall_{k}"] = float(r)
    metrics["confusion"] = MulticlassConfusionMatrix(num_classes)(p, y).tolist()  # rows: true class, cols: predicted
    return metrics, p, y


def _tune_session_active() -> bool:
    try:
        from ray.train._internal.session import get_session
    except ImportError:  # Ray is optional for a plain trial
        return False
    return bool(get_session())


@dataclass
class _Loop:
    """What one trial's epochs share: the model and everything that updates it."""

    cfg: TrialConfig
    device: torch.device
    model: nn.Module
    params: list[nn.Parameter]
    prep: BatchAugment
    optimizer: torch.optim.Optimizer
    schedule: Any  # a torch LR scheduler or None
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp_dtype: torch.dtype | None
    batch_size: int
    steps_per_epoch: int
    ema: WeightAverage | None = None

    @property
    def scored_model(self) -> nn.Module:
        """The model that is validated and handed back: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state(self, history: list[dict[str, Any]], epoch: int, classes: tuple[str, ...]) -> dict[str, Any]:
        """A checkpointable state; ``resume`` reads it back."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "scaler": self.scaler.state_dict(),
            "augment": self.prep.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "history": list(history),
            "epoch": epoch,
            "config": self.cfg.to_dict(),
            "classes": list(classes),
        }

    def resume(self, state: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Load a checkpointed state; returns its history and the number of epochs it had done."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.prep.load_state_dict(state["augment"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # a checkpoint from before averaging was on: the average starts from the resumed weights
                self.ema.module.load_state_dict(self.model.state_dict())
        return list(state["history"]), int(state["epoch"])


def _build_loop(cfg: TrialConfig, prepared: PreparedData, dev: torch.device) -> _Loop:
    """Model (channels_last), optimiser, schedule, loss and on-device augmentation for ``cfg``."""
    torch.manual_seed(cfg.seed)
    num_classes = len(prepared.classes)
    h, w = cfg.image_spec.size
    model = create_model(
        cfg.model, in_channels=cfg.channels, num_classes=num_classes, image_size=(h, w), **cfg.model_kwargs()
    ).to(dev)
    # channels_last on every device: on CPU it speeds a training step up 1.0-2.3x for the CPU-profile models and is
    # never slower (python benchmarks/memory_format.py); on CUDA it is what tensor cores want under AMP. The
    # augmentation writes its batches in the same layout, so no batch is converted on the training thread.
    layout = torch.channels_last
    model = model.to(memory_format=layout)
    params = [p for p in model.parameters() if p.requires_grad]
    mean, std = prepared.normalisation(cfg.pretrained, cfg.intensity)
    n_train = len(prepared.train)
    bs = min(cfg.batch_size, n_train)
    # A last batch of one image breaks BatchNorm's batch statistics; drop it rather than crash the trial.
    steps_per_epoch = n_train // bs + (1 if n_train % bs > 1 or (n_train % bs == 1 and bs == 1) else 0)
    optimizer = _make_optimizer(cfg, params)
    amp_dtype = _amp_dtype(dev)
    weights = _class_weights(cfg, prepared.train.y, num_classes, dev)
    decay = ema_decay(cfg.ema_epochs, steps_per_epoch)
    return _Loop(
        cfg=cfg,
        device=dev,
        model=model,
        params=params,
        prep=BatchAugment(
            cfg.augment,
            mean,
            std,
            device=dev,
            seed=cfg.seed,
            intensity=cfg.intensity,
            memory_format=layout,
        ),
        optimizer=optimizer,
        schedule=_make_schedule(cfg, optimizer, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        criterion=nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing),
        amp_dtype=amp_dtype,
        batch_size=bs,
        steps_per_epoch=steps_per_epoch,
        ema=WeightAverage(model, decay) if decay > 0 else None,
    )


def _step_schedule(schedule: Any, *, end_of_epoch: bool, loss: float | None = None) -> None:
    """The one place the learning rate schedule steps: one-cycle after every batch, the others after every epoch
    (reduce-on-plateau on ``loss``)."""
    if schedule is None:
        return
    if isinstance(schedule, torch.optim.lr_scheduler.OneCycleLR):
        if not end_of_epoch:
            schedule.step()
    elif end_of_epoch:
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(loss)
        else:
            schedule.step()


#: Make batch k+1 in a background thread while the model trains on batch k (CPU only; ``False``: inline).
PREFETCH_ON_CPU = True


def _train_batches(
    loop: _Loop, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's augmented batches in ``order``, bitwise the same whether made inline or prefetched.

    On the CPU one background thread gathers and augments batch k+1 (on one intra-op thread, like every augmentation)
    while the model's step on batch k runs on the caller's threads: the single-threaded augmentation fills the gaps a
    small model's step leaves on the cores instead of adding to each step. Only that thread draws from the
    augmentation generator, batch after batch, and no batch of the next epoch is started, so the random draws, the
    batches and the generator state at the epoch's end (the checkpoint) are the same as made inline.
    """
    bs, dev = loop.batch_size, loop.device

    def make(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = order[step * bs : (step + 1) * bs]
        with one_cpu_thread(dev):
            return loop.prep(x[idx], train=True), y[idx].to(dev, non_blocking=True)

    if dev.type != "cpu" or not PREFETCH_ON_CPU or loop.steps_per_epoch < 2:
        for step in range(loop.steps_per_epoch):
            yield make(step)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment") as pool:
        pending = pool.submit(make, 0)
        try:
            for step in range(1, loop.steps_per_epoch):
                batch = pending.result()
                pending = pool.submit(make, step)
                yield batch
            yield pending.result()
        finally:  # the consumer stopped early (an error): drop a batch not yet begun; the pool waits for a running one
            pending.cancel()


def _train_epoch(loop: _Loop, split: ImageSplit, epoch: int) -> dict[str, float]:
    """One pass over ``split`` in a (seed, epoch)-determined order; returns its loss, accuracy and images per second."""
    cfg, dev = loop.cfg, loop.device
    t0 = time.perf_counter()
    set_train_mode(loop.model, True)
    x_train, y_train = _as_tensor(split.x), torch.from_numpy(np.asarray(split.y))
    # Each epoch's order depends only on (seed, epoch): a resumed trial sees the batches an uninterrupted one would.
    order = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(len(y_train)))
    seen, loss_sum, correct = 0, 0.0, 0
    for step, (xb, yb) in enumerate(_train_batches(loop, x_train, y_train, order)):
        with torch.autocast(dev.type, dtype=loop.amp_dtype, enabled=loop.amp_dtype is not None):
            logits = loop.model(xb)
            loss = loop.criterion(logits.float(), yb)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} "
                f"(model {cfg.model}, optimizer {cfg.optimizer}, lr {cfg.lr:g}); the trial is stopped"
            )
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            loop.scaler.unscale_(loop.optimizer)
            nn.utils.clip_grad_norm_(loop.params, cfg.grad_clip)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        _step_schedule(loop.schedule, end_of_epoch=False)
        if loop.ema is not None:
            loop.ema.update(loop.model)
        seen += len(yb)
        loss_sum += float(loss.detach()) * len(yb)
        correct += int((logits.detach().argmax(1) == yb).sum())
    return {
        "loss": loss_sum / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
    }


def _validation_metrics(loop: _Loop, prepared: PreparedData) -> dict[str, Any]:
    """The ``val_*`` metrics every trial reports each epoch."""
    val, _, _ = evaluate(
        loop.scored_model,
        prepared.val,
        loop.prep,
        len(prepared.classes),
        batch_size=max(256, loop.batch_size),
        criterion=nn.CrossEntropyLoss(),
        amp_dtype=loop.amp_dtype,
    )
    return {
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "val_balanced_acc": val["balanced_acc"],
        "val_macro_f1": val["macro_f1"],
        "val_auroc": val["auroc"],
        **{f"val_recall_{c}": val[f"recall_{k}"] for k, c in enumerate(prepared.classes)},
        "val_majority_rate": prepared.majority_rate(),
        # JSON text, so it survives Tune's flat result tables: [[count]] rows true class, columns predicted.
        "val_confusion": json.dumps(val["confusion"]),
    }


def train_trial(
    config: dict[str, Any] | TrialConfig,
    data: DataCatalog | SpecSource | PreparedData,
    *,
    reporter: Reporter | None = None,
    resume_state: dict[str, Any] | None = None,
    device: str | None = None,
    validate: bool = True,
) -> TrialResult:
    """Train one config on ``data`` for ``config.epochs`` epochs and return the per-epoch metrics and model.

    ``reporter(metrics, state)`` is called after every epoch with the metrics and a checkpointable state dict (it
    holds live tensors: save or deep-copy it during the call); ``resume_state`` (such a state) continues a trial
    where it stopped. ``validate=False`` trains without a validation set (the final retrain on train+val): the
    epoch metrics then hold training figures only and reduce-on-plateau follows the training loss.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    prepared = data if isinstance(data, PreparedData) else data.get(cfg.image_spec)
    if prepared.spec != cfg.image_spec:
        raise ValueError(
            f"data was prepared at {prepared.spec.label()} but the config asks for {cfg.image_spec.label()}"
        )
    if len(prepared.train) == 0 or (validate and len(prepared.val) == 0):
        raise ValueError(f"empty split: {len(prepared.train)} training and {len(prepared.val)} validation images")

    loop = _build_loop(cfg, prepared, pick_device(device))
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume_state is not None:
        history, start_epoch = loop.resume(resume_state)
        log.info("resuming %s at epoch %d", cfg.model, start_epoch + 1)

    num_params = count_parameters(loop.model)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        train = _train_epoch(loop, prepared.train, epoch)
        metrics: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train["loss"], "train_acc": train["acc"]}
        if validate:
            metrics |= _validation_metrics(loop, prepared)
        lr_now = loop.optimizer.param_groups[0]["lr"]  # the rate this epoch ended with, before the epoch's step
        _step_schedule(loop.schedule, end_of_epoch=True, loss=metrics.get("val_loss", metrics["train_loss"]))
        metrics |= {
            "lr": lr_now,
            EPOCH_SECONDS: time.perf_counter() - t0,
            "train_images_per_s": train["images_per_s"],
            # Optimiser steps so far: equal epochs are very different amounts of training at batch 1 and at 300.
            "train_steps": (epoch + 1) * loop.steps_per_epoch,
            "num_params": num_params,
            "device": loop.device.type,
        }
        history.append(metrics)
        if reporter is not None:
            reporter(metrics, loop.state(history, epoch + 1, prepared.classes))
    mean, std = prepared.normalisation(cfg.pretrained, cfg.intensity)
    return TrialResult(cfg, history, loop.scored_model, prepared.classes, extra={"mean": mean, "std": std})


def _tune_reporter(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    """Report an epoch to Tune, with ``state`` as its checkpoint (None: the metrics only)."""
    import ray
    from ray import tune

    # Which node ran the epoch: Tune adds pid, hostname and node_ip itself, but nodes can share a host (and an IP).
    metrics = {**metrics, "node_id": ray.get_runtime_context().get_node_id()}
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, CHECKPOINT_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_checkpoint_state(directory: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by a trial; tensors and plain values only (no code runs on load)."""
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def train_fn(
    config: dict[str, Any], data: DataCatalog | SpecSource | PreparedData | None = None
) -> dict[str, Any] | None:
    """The Ray Tune function trainable (also callable directly): one trial of ``config`` on ``data``.

    Inside Tune it reports every epoch with a checkpoint and resumes from ``tune.get_checkpoint()``, or from a newer
    checkpoint in its folder that Tune's state missed (``_catch_up``); outside Tune it trains and returns the last
    epoch's metrics. ``data`` defaults to the bundled demo set.
    """
    data = data if data is not None else DataCatalog()
    if not _tune_session_active():
        return train_trial(config, data).final
    from ray import tune

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    trial = tune.get_context().get_trial_name()
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = _readable_checkpoint(d, checkpoint.path, trial)
        if resume is not None:
            folder, name = posixpath.split(checkpoint.path.rstrip("/"))
            own = _CHECKPOINT_DIR.fullmatch(name)
            if own is not None:
                resume = _catch_up(checkpoint.filesystem, folder, int(own.group(1)), resume, trial)
    elif (storage := _trial_storage()) is not None:
        resume = _catch_up(*storage, -1, None, trial)
    train_trial(config, data, reporter=_tune_reporter, resume_state=resume)
    return None


def _trial_storage() -> tuple[Any, str] | None:
    """(filesystem, folder) of this trial on the run's storage, or None. Tune hands a trial its folder only inside a
    checkpoint; before its first one, the folder is read from Ray's session (an internal of Ray 2.x)."""
    try:
        from ray.train._internal.session import get_session

        storage = get_session().storage
        return storage.storage_filesystem, storage.trial_fs_path
    except Exception:  # noqa: BLE001 - another Ray: the trial trains from scratch as before
        return None


def _catch_up(fs: Any, folder: str, after: int, state: dict[str, Any] | None, trial: str) -> dict[str, Any] | None:
    """The state a (re)started trial goes on from: ``state`` (Tune's checkpoint ``after``, None: none), or a later
    checkpoint the trial wrote in its ``folder`` that Tune's saved state does not know of, reported to Tune now.

    A trial writes an epoch's checkpoint before Tune takes in the epoch; a run stopped in between (Ctrl+C as the result
    was on its way, a driver killed) leaves Tune's state an epoch behind the trial. Its epochs after ``state`` are
    reported from that checkpoint's history, as they were trained, instead of being trained a second time.
    """
    done = int(state["epoch"]) if state is not None else 0
    newer = _newer_checkpoint(fs, folder, after, done)
    if newer is None:
        return state
    path, latest = newer
    last = int(latest["epoch"])
    log.warning(
        "trial %s: resuming from %s (epoch %d), newer than the checkpoint Ray Tune recorded (epoch %d); epoch(s) "
        "%d-%d are reported from it, not trained again",
        trial,
        f"{path}/{CHECKPOINT_FILE}",
        last,
        done,
        done + 1,
        last,
    )
    history = latest["history"]
    for metrics in history[done : last - 1]:
        _tune_reporter(metrics, None)
    _tune_reporter(history[last - 1], latest)
    return latest


#: Ray Tune's name of the folder of a trial's n-th checkpoint (n from 0).
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")


def _newer_checkpoint(fs: Any, folder: str, after: int, epoch: int) -> tuple[str, dict[str, Any]] | None:
    """(path, state) of the newest readable checkpoint in the trial ``folder`` on ``fs`` (the storage, local or
    remote) numbered above ``after`` and past ``epoch``; None if there is none. A checkpoint cut short while it was
    written cannot be read and is passed over."""
    from pyarrow.fs import FileSelector, FileType
    from ray import tune

    try:
        infos = fs.get_file_info(FileSelector(folder, allow_not_found=True))
    except OSError:
        return None
    later = sorted(
        (
            (int(m.group(1)), info.path)
            for info in infos
            if info.type == FileType.Directory and (m := _CHECKPOINT_DIR.fullmatch(info.base_name))
        ),
        reverse=True,
    )
    for index, path in later:
        if index <= after:
            break
        try:
            with tune.Checkpoint(path, filesystem=fs).as_directory() as d:
                state = load_checkpoint_state(d)
        except Exception:  # noqa: BLE001 - cut short or garbled: an earlier one may still be whole
            continue
        if int(state["epoch"]) > epoch:
            return path, state
    return None


def _readable_checkpoint(directory: str, shown_path: str, trial: str) -> dict[str, Any] | None:
    """The state in ``directory``, or None (train from scratch) when it cannot be read: a truncated or garbled file.

    Tune keeps one checkpoint per trial (``num_to_keep=1``), so there is no older one to fall back to; the trial starts
    over at epoch 1 and says so in one warning line (forwarded to the driver's ``search.log``).
    """
    try:
        return load_checkpoint_state(directory)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the trial can still train from scratch
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        log.warning(
            "trial %s: checkpoint %s could not be read (%s); training the trial again from scratch (epoch 1)",
            trial,
            f"{shown_path}/{CHECKPOINT_FILE}",
            reason,
        )
        return None
