"""The training loop, run for real on real chest X-rays, outside Ray Tune."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import train as train_module
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.data import DataCatalog, ImageSplit, PreparedData
from trainables.ema import WeightAverage, ema_decay
from trainables.train import NonFiniteLossError, train_fn, train_trial


@pytest.fixture(scope="module")
def catalog() -> DataCatalog:
    return DataCatalog()


@pytest.fixture(scope="module")
def small(catalog: DataCatalog) -> PreparedData:
    """A 200/100-image slice of the demo set at 32x32: fast enough to run every optimiser and schedule."""
    full = catalog.prepare(ImageSpec(32, 32))
    rng = np.random.default_rng(0)
    tr = rng.choice(len(full.train), 200, replace=False)
    va = rng.choice(len(full.val), 100, replace=False)
    return dataclasses.replace(
        full,
        train=ImageSplit(full.train.x[tr], full.train.y[tr]),
        val=ImageSplit(full.val.x[va], full.val.y[va]),
    )


def test_two_epochs_on_real_xrays_beat_the_majority_class(catalog: DataCatalog) -> None:
    config = {"model": "tinyvgg", "width": 1.6, "image_size": "64", "batch_size": 16, "lr": 2e-3, "epochs": 2}
    result = train_trial(config, catalog)
    last = result.final
    assert len(result.history) == 2
    assert last["val_acc"] > last["val_majority_rate"] + 0.05, last
    assert last["val_balanced_acc"] > 0.45 and last["val_auroc"] > 0.75
    expected = {"train_loss", "train_acc", "val_loss", "val_acc", "val_balanced_acc", "val_macro_f1", "val_auroc"}
    assert expected | {"val_recall_normal", "val_recall_bacterial", "val_recall_viral"} <= set(last)
    assert last["epoch_seconds"] > 0 and last["train_images_per_s"] > 0
    # Optimiser steps so far: one per batch of 16, the last partial batch included (a batch of one is dropped).
    n = len(catalog.get(result.config.image_spec).train)
    per_epoch = n // 16 + (n % 16 > 1)
    assert [h["train_steps"] for h in result.history] == [per_epoch, 2 * per_epoch]


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer": "sgd", "lr": 0.05, "nesterov": True, "schedule": "onecycle", "grad_clip": 1.0},
        {"optimizer": "adam", "schedule": "cosine", "label_smoothing": 0.1, "class_weights": "balanced"},
        {"optimizer": "adamw", "weight_decay": 1e-4, "schedule": "plateau", "hflip": 0.5, "trivial_augment": True},
        {"model": "resnet18", "dropout": 0.2, "batch_size": 64, "rotate": 10, "crop_scale": 0.8, "epochs": 1},
        {"model": "cifar_cnn", "width": 0.25, "brightness": 0.2, "contrast": 0.2},
        {"batch_size": 1, "vflip": 0.5, "epochs": 1},
    ],
)
def test_every_optimiser_schedule_and_option_trains(small: PreparedData, overrides: dict) -> None:
    config = {"model": "tinyvgg", "image_size": "32", "batch_size": 32, "epochs": 2, **overrides}
    history = train_trial(config, small).history
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in history)
    if config.get("schedule") == "cosine":
        assert history[-1]["lr"] < history[0]["lr"] or len(history) == 1


def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(small: PreparedData) -> None:
    config = {"model": "tinyvgg", "image_size": "32", "epochs": 3, "hflip": 0.5, "trivial_augment": True}
    states: list[dict] = []
    full = train_trial(config, small, reporter=lambda metrics, state: states.append(copy.deepcopy(state)))
    resumed = train_trial(config, small, resume_state=states[0])
    assert len(resumed.history) == 3
    for a, b in zip(full.history[1:], resumed.history[1:]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_weight_average_is_what_is_validated_checkpointed_resumed_and_handed_back(small: PreparedData) -> None:
    """With ``ema_epochs`` the trial's reported scores are those of the averaged weights, and the model it hands back
    (the one a final retrain exports) is that average: evaluating it gives the last epoch's figures again. Training
    itself is untouched (the same training losses as without averaging), and a resumed trial continues the average
    from its checkpoint to the same weights as an uninterrupted one."""
    config = {"model": "tinyvgg", "image_size": "32", "epochs": 3, "batch_size": 16, "hflip": 0.5}
    plain = train_trial(config, small)
    states: list[dict] = []
    averaged = train_trial(
        {**config, "ema_epochs": 1}, small, reporter=lambda metrics, state: states.append(copy.deepcopy(state))
    )
    assert [h["train_loss"] for h in averaged.history] == [h["train_loss"] for h in plain.history]
    assert [h["val_loss"] for h in averaged.history] != [h["val_loss"] for h in plain.history]
    prep = train_module.BatchAugment(
        averaged.config.augment, averaged.extra["mean"], averaged.extra["std"], device=torch.device("cpu")
    )
    metrics, _, _ = train_module.evaluate(averaged.model, small.val, prep, len(small.classes))
    assert metrics["loss"] == pytest.approx(averaged.final["val_loss"], rel=1e-5)
    assert not all(torch.equal(p, q) for p, q in zip(averaged.model.parameters(), plain.model.parameters()))
    assert states[0]["ema"]["updates"] == averaged.history[0]["train_steps"]

    resumed = train_trial({**config, "ema_epochs": 1}, small, resume_state=states[0])
    assert [h["val_loss"] for h in resumed.history] == pytest.approx([h["val_loss"] for h in averaged.history])
    for p, q in zip(resumed.model.state_dict().values(), averaged.model.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6)


def test_weight_average_window_and_warm_up() -> None:
    """``ema_epochs`` is a window in epochs whatever the batch size; early on the window is a quarter of the steps
    taken, so the average of a steadily moving weight trails it by a fraction of the trial so far, not by the window."""
    assert ema_decay(0, 40) == 0.0
    assert ema_decay(1, 40) == pytest.approx(1 - 1 / 40)
    assert ema_decay(2, 10) == ema_decay(1, 20)
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, ema_decay(10, 100))
    for step in range(1, 401):
        with torch.no_grad():
            net.weight.fill_(float(step))
        average.update(net)
    lag = 400 - float(average.module.weight)
    # A window of a quarter of the steps so far weighs step k by about k^3: the average trails by a fifth (80 steps),
    # where the 1000-step window itself would trail by far more.
    assert 75 < lag < 85
    assert not average.module.weight.requires_grad
    with pytest.raises(ValueError, match="EMA decay must be in"):
        WeightAverage(net, 1.0)


def test_same_seed_same_result_other_seed_other_result(small: PreparedData) -> None:
    config = {"model": "tinyvgg", "image_size": "32", "epochs": 1, "hflip": 0.5}
    a = train_trial(config, small).final
    b = train_trial(config, small).final
    c = train_trial({**config, "seed": 1}, small).final
    assert a["val_loss"] == b["val_loss"] and a["val_loss"] != c["val_loss"]


def test_prefetched_batches_train_exactly_as_batches_made_inline(
    small: PreparedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Augmenting the next batch in a background thread changes no random draw: same losses, same final weights and
    the same augmentation generator state in the checkpoint as making every batch inline."""
    config = {
        "model": "tinyvgg",
        "image_size": "32",
        "epochs": 2,
        "batch_size": 16,
        "hflip": 0.5,
        "trivial_augment": True,
    }
    runs = {}
    for prefetch in (True, False):
        monkeypatch.setattr(train_module, "PREFETCH_ON_CPU", prefetch)
        states: list[dict] = []
        result = train_trial(
            config, small, device="cpu", reporter=lambda m, s, kept=states: kept.append(copy.deepcopy(s))
        )
        runs[prefetch] = (result, states[-1])
    (a, sa), (b, sb) = runs[True], runs[False]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert torch.equal(sa["augment"]["generator"], sb["augment"]["generator"])


def test_exploding_loss_ends_the_trial_with_a_clear_error(small: PreparedData) -> None:
    config = {"model": "tinyvgg", "image_size": "32", "optimizer": "sgd", "lr": 1e12, "epochs": 2}
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf).*lr 1e\+12"):
        train_trial(config, small)


def test_plain_python_call_of_the_tune_function(small: PreparedData) -> None:
    metrics = train_fn({"model": "tinyvgg", "image_size": "32", "epochs": 1}, small)
    assert metrics is not None and metrics["epoch"] == 1 and 0 <= metrics["val_acc"] <= 1


def test_wrong_resolution_for_the_data_is_an_error(small: PreparedData) -> None:
    with pytest.raises(ValueError, match="prepared at 32x32-grey-stretch but the config asks for 64x64"):
        train_trial({"image_size": "64", "epochs": 1}, small)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"modle": "tinyvgg"}, "unknown trial config key\\(s\\) modle; valid keys: batch_size"),
        ({"model": "vgg99"}, "unknown model 'vgg99'; valid models: alexnet_gray, cifar_cnn"),
        ({"model": "tinyvgg", "pretrained": True}, "cannot be pretrained"),
        ({"model": "resnet18", "width": 2.0}, "takes no width"),
        ({"optimizer": "lion"}, "optimizer must be one of sgd, adam, adamw"),
        ({"image_size": "huge"}, "128 or 256x300"),
        ({"hflip": 2.0}, "hflip is a probability"),
        ({"ema_epochs": -1}, "ema_epochs must be >= 0"),
    ],
)
def test_bad_configs_name_the_key_and_the_valid_values(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrialConfig.from_dict(config)


def test_config_dict_round_trip() -> None:
    cfg = TrialConfig.from_dict({"model": "alexnet_gray", "image_size": "256x300", "batch_size": "35", "hflip": 0.5})
    assert cfg.image_spec.size == (256, 300) and cfg.batch_size == 35
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_cpu_is_picked_without_a_gpu() -> None:
    from trainables.train import pick_device

    if not torch.cuda.is_available():
        assert pick_device().type in ("cpu", "mps")


def test_a_resumed_trial_finds_the_newest_whole_checkpoint_written_after_tunes(tmp_path: Path) -> None:
    """What ``--resume`` goes on from when Tune's state missed a checkpoint the trial wrote (Ctrl+C as the result was
    on its way): the newest readable one numbered after Tune's and past its epoch; one cut short is passed over."""
    from pyarrow.fs import LocalFileSystem

    from trainables.train import CHECKPOINT_FILE, _newer_checkpoint

    for index in range(3):  # checkpoint_00000N holds epoch N+1, as Tune numbers them
        folder = tmp_path / f"checkpoint_{index:06d}"
        folder.mkdir()
        history = [{"epoch": e} for e in range(1, index + 2)]
        torch.save({"epoch": index + 1, "history": history}, folder / CHECKPOINT_FILE)
    newest = tmp_path / "checkpoint_000002" / CHECKPOINT_FILE
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a copy that did not finish
    fs = LocalFileSystem()
    path, state = _newer_checkpoint(fs, str(tmp_path), 0, 1)
    assert path == str(tmp_path / "checkpoint_000001") and state["epoch"] == 2
    assert _newer_checkpoint(fs, str(tmp_path), 1, 2) is None  # Tune's own is the newest whole one
    assert _newer_checkpoint(fs, str(tmp_path), -1, 2) is None  # nothing past the epoch Tune has
    assert _newer_checkpoint(fs, str(tmp_path / "not-yet"), -1, 0) is None  # a trial's first start


def test_trial_cli_scores_on_the_validation_split_a_search_with_that_seed_draws(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``search.run --seed S`` splits the data with seed S; ``python -m trainables.trial --split-seed S`` does too, so
    a search's trial can be trained again by hand on the same validation images."""
    import json

    from trainables.trial import main

    assert main(["--split-seed", "2", "model=tinyvgg", "image_size=32", "epochs=1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    data = lines[0]["data"]
    searched = DataCatalog(split_seed=2).describe()
    assert data["split_seed"] == 2 and data["val_images"] == searched["val_images"]
    assert data["val_images"] != DataCatalog(split_seed=0).describe()["val_images"]
    assert lines[1]["epoch"] == 1
