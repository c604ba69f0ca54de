"""The final model: ensembles, test-time augmentation, calibration, decisions, the model directory format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from search.export import export_best
from search.final import FinalRecipe
from search.modeldir import load_model_dir, save_model_dir
from tests.conftest import ROOT, _copy_slice, write_run_json, write_trial
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.data import DEMO_DATA, DataCatalog, ImageSplit, channel_stats
from trainables.ensemble import FinalModel, Member, adapt_images, balanced_weights, calibrate, fit_temperature, predict
from trainables.intensity import standardise
from trainables.models import create_model
from trainables.scoring import calibration
from trainables.train import train_trial

CLASSES = ("normal", "bacterial", "viral")


@pytest.fixture(scope="module")
def xrays() -> np.ndarray:
    """40 real demo X-rays decoded at 48x56 grey (the final model's input spec in these tests)."""
    catalog = DataCatalog(DEMO_DATA, "pneumonia3class", include_test=True)
    return catalog.prepare(ImageSpec(48, 56, 1, "stretch")).test.x[::13][:40]


def _member(model: str, size: tuple[int, int], channels: int, intensity: str, tta: str, seed: int) -> Member:
    torch.manual_seed(seed)
    net = create_model(model, in_channels=channels, num_classes=3, image_size=size).eval()
    mean, std = (0.45,) * channels, (0.25,) * channels
    return Member(net, size, channels, intensity, mean, std, tta)


def test_exported_ensemble_equals_its_members_run_separately_and_averaged(xrays: np.ndarray, tmp_path: Path) -> None:
    members = [
        _member("tinyvgg", (48, 56), 1, "none", "none", 0),
        _member("cifar_cnn", (32, 32), 3, "equalize", "none", 1),
        _member("tinyvgg", (40, 40), 1, "autocontrast", "none", 2),
    ]
    final = FinalModel(members, temperature=1.7).eval()
    x = torch.from_numpy(xrays)
    with torch.no_grad():
        separately = torch.stack([m(x) for m in members]).mean(0)
        # Each member by hand: resize as retrain does, standardise, normalise, softmax.
        by_hand = []
        for m in members:
            xm = torch.from_numpy(adapt_images(xrays, m.size, m.channels))
            xm = (standardise(xm, m.intensity).float() / 255 - m.mean) / m.std
            by_hand.append(m.net(xm).softmax(1))
    torch.testing.assert_close(separately, torch.stack(by_hand).mean(0), atol=1e-5, rtol=1e-4)
    expected = calibrate(separately, 1.7)

    configs = [
        TrialConfig(model="tinyvgg", image_size="48x56", channels=1),
        TrialConfig(model="cifar_cnn", image_size="32", channels=3, intensity="equalize"),
        TrialConfig(model="tinyvgg", image_size="40", channels=1, intensity="autocontrast"),
    ]
    out = save_model_dir(
        tmp_path / "m", final, configs, CLASSES, ImageSpec(48, 56, 1, "stretch"), "pneumonia3class", [1, 1, 1], "argmax"
    )
    ts = torch.jit.load(str(out / "model.torchscript"))
    torch.testing.assert_close(ts(x), expected, atol=1e-5, rtol=1e-4)
    loaded = load_model_dir(out)
    assert len(loaded.configs) == 3 and loaded.spec == ImageSpec(48, 56, 1, "stretch")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), expected, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ts(x).sum(1), torch.ones(len(x)), atol=1e-5)


@pytest.mark.parametrize("tta", ["hflip", "shift"])
def test_a_tta_module_gives_the_same_output_for_the_same_input(xrays: np.ndarray, tmp_path: Path, tta: str) -> None:
    member = _member("tinyvgg", (48, 56), 1, "none", tta, 3)
    final = FinalModel([member]).eval()
    config = TrialConfig(model="tinyvgg", image_size="48x56", channels=1)
    out = save_model_dir(
        tmp_path / tta, final, [config], CLASSES, ImageSpec(48, 56, 1, "stretch"), "t", [1] * 3, "argmax"
    )
    ts = torch.jit.load(str(out / "model.torchscript"))
    x = torch.from_numpy(xrays)
    first, second = ts(x), ts(x.clone())
    assert torch.equal(first, second)
    with torch.no_grad():
        plain = FinalModel([_member("tinyvgg", (48, 56), 1, "none", "none", 3)]).eval()(x)
        if tta == "hflip":  # the average of the image and its mirror, each through the same network
            mirrored = FinalModel([_member("tinyvgg", (48, 56), 1, "none", "none", 3)]).eval()(x.flip(-1))
            torch.testing.assert_close(first, (plain + mirrored) / 2, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(first, plain)  # the views changed the answer: TTA is really in the graph


def test_temperature_fitted_on_one_split_lowers_ece_on_a_split_it_never_saw() -> None:
    """An overconfident model (tinyvgg trained to fit 300 images) is calibrated on held-out train images and
    scored on the demo test split, which neither training nor calibration saw."""
    spec = ImageSpec(32, 32, 1, "stretch")
    catalog = DataCatalog(DEMO_DATA, "pneumonia3class", include_test=True)
    prepared = catalog.prepare(spec)
    fit, held = catalog.holdout_split(spec, 0.3, 0)
    small = ImageSplit(fit.x[::3][:300], fit.y[::3][:300])
    mean, std = channel_stats(small.x)
    import dataclasses

    data = dataclasses.replace(prepared, train=small, val=ImageSplit(small.x[:0], small.y[:0]), mean=mean, std=std)
    config = TrialConfig(model="tinyvgg", image_size="32", channels=1, epochs=12, lr=3e-3, batch_size=16)
    result = train_trial(config, data, validate=False)
    member = Member(result.model.eval().float(), (32, 32), 1, "none", mean, std)
    model = FinalModel([member]).eval()
    t = fit_temperature(predict(model.average, held.x), torch.from_numpy(held.y))
    assert t > 1.0  # the overfit model was overconfident: calibration softens it
    test_raw = predict(model.average, prepared.test.x).numpy()
    test_cal = calibrate(torch.from_numpy(test_raw), t).numpy()
    before, after = calibration(prepared.test.y, test_raw)["ece"], calibration(prepared.test.y, test_cal)["ece"]
    assert after < before, (before, after, t)
    assert (test_raw.argmax(1) == test_cal.argmax(1)).all()  # temperature never changes a decision


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(4000, 3)) * 3)
    y = torch.distributions.Categorical(logits=logits / 2.5).sample()
    t = fit_temperature(logits.softmax(1), y)
    assert t == pytest.approx(2.5, rel=0.1)


def test_balanced_decisions_weigh_classes_by_inverse_frequency() -> None:
    w = balanced_weights(np.array([0] * 10 + [1] * 30 + [2] * 20), 3)
    assert w.mean() == pytest.approx(1.0) and w[0] / w[1] == pytest.approx(3.0) and w[2] / w[1] == pytest.approx(1.5)
    prob = np.array([[0.3, 0.5, 0.2]])
    from trainables.scoring import score

    s = score(np.array([0]), prob, CLASSES, n_boot=10, decision_weights=w)
    assert s["accuracy"]["value"] == 1.0  # 0.3 x 3 beats 0.5 x 1
    assert score(np.array([0]), prob, CLASSES, n_boot=10)["accuracy"]["value"] == 0.0


def _fake_run(run_dir: Path) -> Path:
    write_run_json(run_dir, "fake", list(CLASSES))
    scores = {  # trial -> (config changes, balanced accuracy per epoch)
        "a": ({"model": "tinyvgg", "lr": 0.001}, [0.5, 0.7, 0.6]),
        "b": ({"model": "cifar_cnn", "lr": 0.002}, [0.55, 0.68]),
        "c": ({"model": "tinyvgg", "lr": 0.001, "seed": 5}, [0.71]),  # a's config again with another seed
        "d": ({"model": "tinyvgg", "lr": 0.004, "resize": "pad"}, [0.66]),  # another resize policy
        "e": ({"model": "alexnet_gray", "lr": 0.003}, [0.4, 0.62]),
    }
    seconds = {"a": 5.0, "b": 100.0, "c": 5.0, "d": 5.0, "e": 10.0}
    for i, (tid, (config, curve)) in enumerate(scores.items()):
        epochs = [{"val_balanced_acc": v, "val_loss": 1 - v, "epoch_seconds": seconds[tid]} for v in curve]
        write_trial(run_dir, tid, i + 1, config, epochs)
    return run_dir


def test_export_puts_the_best_distinct_configs_of_one_resize_policy_in_the_final_model(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path / "run")
    doc = json.loads(export_best(run_dir, members=3).read_text())
    members = doc["final"]["members"]
    # c (0.71) is a's config with another seed: one member; d uses another resize policy.
    assert [m["trial"] for m in members] == ["c", "b", "e"]
    assert [m["config"]["epochs"] for m in members] == [1, 2, 2]
    assert doc["config"] == members[0]["config"]
    recipe = FinalRecipe.from_best_config(doc, "x")
    assert recipe.tta == FinalRecipe.tta and recipe.decision == FinalRecipe.decision
    assert len(recipe.configs()) == 3
    # b would take 2 x 100 s at the search's pace: over a 100 s budget, so the next one in line joins instead.
    cheap = json.loads(export_best(run_dir, tmp_path / "cheap.json", members=3, member_budget=100).read_text())
    assert [m["trial"] for m in cheap["final"]["members"]] == ["c", "e"]
    one = json.loads(export_best(run_dir, tmp_path / "one.json", members=1, tta="hflip").read_text())
    assert len(one["final"]["members"]) == 1 and one["final"]["tta"] == "hflip"


def test_an_old_best_config_without_a_final_recipe_is_one_model_with_argmax() -> None:
    doc = {"format": "cxr-search/best-config/v1", "config": {"model": "tinyvgg", "epochs": 2}}
    recipe = FinalRecipe.from_best_config(doc, "old.json")
    assert len(recipe.members) == 1 and recipe.decision == "argmax" and recipe.calibration == "none"
    assert recipe.holdout_fraction == 0


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("final-data") / "chest_xray"
    return _copy_slice(root, {"train/NORMAL": 60, "train/PNEUMONIA": 120, "test/NORMAL": 20, "test/PNEUMONIA": 40})


def test_an_old_single_model_best_config_still_retrains_and_a_v1_model_dir_still_evaluates(
    small_data: Path, tmp_path: Path
) -> None:
    config = TrialConfig(model="tinyvgg", image_size="32", channels=1, epochs=1).to_dict()
    old = {"format": "cxr-search/best-config/v1", "config": config, "task": "pneumonia3class", "space": "p3"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    out = tmp_path / "model"
    args = ["-m", "search.retrain", str(tmp_path / "old.json"), "--data", str(small_data), "--out", str(out)]
    proc = _run(args, ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_on"]["images"] == 180 and metrics["trained_on"]["held_out"] == 0
    assert (out / "members" / "0" / "weights.pt").is_file()
    meta = json.loads((out / "config.json").read_text())
    assert meta["decision"]["rule"] == "argmax" and meta["temperature"] == 1.0
    # The same command again refuses to replace the model; --force replaces it.
    again = _run(args, ROOT)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert _run([*args, "--force"], ROOT).returncode == 0

    # A version-1 directory (one network's weights.pt at the top, logits out) still loads and evaluates.
    v1 = tmp_path / "v1"
    v1.mkdir()
    torch.manual_seed(0)
    net = create_model("tinyvgg", in_channels=1, num_classes=3, image_size=(32, 32))
    torch.save(net.state_dict(), v1 / "weights.pt")
    (v1 / "config.json").write_text(
        json.dumps({"format": "cxr-search/model/v1", "config": config, "task": "pneumonia3class"})
    )
    (v1 / "labels.json").write_text(json.dumps({"0": "normal", "1": "bacterial", "2": "viral"}))
    prep = {"height": 32, "width": 32, "channels": 1, "resize": "stretch", "mean": [0.5], "std": [0.25]}
    (v1 / "preprocessing.json").write_text(json.dumps(prep))
    proc = _run(["-m", "search.evaluate", str(v1), "--data", str(small_data), "--bootstrap", "50"], ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    assert scores["n"] == 60 and 0 <= scores["calibration"]["ece"] <= 1 and scores["calibration"]["reliability"]


def test_the_held_out_slice_is_patient_disjoint_stratified_and_seeded() -> None:
    catalog = DataCatalog(DEMO_DATA, "pneumonia3class")
    spec = ImageSpec(32, 32, 1, "stretch")
    fit, held = catalog.holdout_split(spec, 0.1, 0)
    prepared = catalog.prepare(spec)
    assert len(fit) + len(held) == len(prepared.train) + len(prepared.val)
    for c in range(3):  # each class ~10% held out
        share = (held.y == c).sum() / ((held.y == c).sum() + (fit.y == c).sum())
        assert 0.07 <= share <= 0.13, (c, share)
    # Patient-disjoint: rebuild which patients each image belongs to from the index the split was made on.
    pool = np.union1d(catalog.train_idx, catalog.val_idx)
    from trainables.index import split_patients

    f, h = split_patients(catalog.index.subset(pool), 0.1, 0)
    patients = np.asarray(catalog.index.patients, dtype=object)[pool]
    assert not set(patients[f]) & set(patients[h])
    again_fit, again_held = catalog.holdout_split(spec, 0.1, 0)
    assert np.array_equal(again_held.x, held.x) and np.array_equal(again_fit.y, fit.y)
    other = catalog.holdout_split(spec, 0.1, 1)[1]
    assert len(other.y) != len(held.y) or not np.array_equal(other.x, held.x)


@pytest.mark.slow
def test_a_retrain_killed_midway_leaves_no_model_folder_and_runs_again(small_data: Path, tmp_path: Path) -> None:
    """SIGKILL during training: no model folder (nothing half-written to mistake for a model); the same command
    then builds it."""
    import signal
    import time

    config = TrialConfig(model="tinyvgg", image_size="32", channels=1, epochs=40).to_dict()
    doc = {"format": "cxr-search/best-config/v1", "config": config, "task": "pneumonia3class"}
    (tmp_path / "best.json").write_text(json.dumps(doc))
    out = tmp_path / "models" / "m"
    args = [sys.executable, "-m", "search.retrain", str(tmp_path / "best.json"), "--data", str(small_data)]
    args += ["--out", str(out)]
    log = tmp_path / "log.txt"
    with log.open("w") as f:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "epoch 2 " not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    models = tmp_path / "models"
    assert not out.exists() and (not models.exists() or list(models.iterdir()) == [])
    again = _run([*args[1:4], *args[4:], "--epochs", "1"], ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "members" / "0" / "weights.pt").is_file() and (out / "model.torchscript").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]
