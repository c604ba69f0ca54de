"""Effect studies end to end (``python -m search.study``) with real Ray Tune and real X-rays, on tiny grids.

Each study runs in a subprocess as a user would start it, on a patient-disjoint slice of the bundled demo set, so
the module stays within a few minutes on 2 cores (those tests are marked slow); the grid and the base config are
checked without Ray.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import _copy_slice

from runstore.trials import load_trials
from search.studies import AUGMENT_LEVELS, get_study, level_lr, parse_levels, trial_configs
from search.study import StudySettings, _base_config, level_summary

PY = sys.executable
ENV = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "search.study", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_slice(
        tmp_path_factory.mktemp("study-data") / "chest_xray", {"train/NORMAL": 50, "train/PNEUMONIA": 100}
    )


@pytest.fixture(scope="module")
def batch_study(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Batch sizes 8 and 128 x learning-rate rules fixed and linear x 2 seeds, 2 epochs each: 8 trials."""
    work = tmp_path_factory.mktemp("study")
    args = ["batch-size", "--data", str(small_data), "--levels", "128,8", "--lr-rule", "fixed,linear", "--seeds", "2"]
    args += ["--epochs", "2", "--storage", str(work / "runs"), "--name", "bs", "--no-report"]
    proc = _run(args, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work / "runs" / "bs"


@pytest.mark.slow
def test_a_batch_size_study_writes_the_study_into_run_json(batch_study: Path) -> None:
    info = json.loads((batch_study / "run.json").read_text())
    study = info["study"]
    assert info["kind"] == "study" and info["finished"] is True and info["metric"] == "val_balanced_acc"
    assert info["mode"] == "max" and info["run_id"] and info["data"]["fingerprint"]
    assert info["weights"]["policy"] == "auto" and info["settings"]["study"] == "batch-size"
    assert study["name"] == "batch-size" and study["factors"] == ["batch_size", "lr_rule"]
    assert study["levels"] == {"batch_size": [8, 128], "lr_rule": ["fixed", "linear"]}
    assert study["seeds"] == [0, 1] and study["epochs"] == 2
    # The default base: the seed AlexNet's recipe (004, the project that asked), scaled to the CPU profile.
    assert study["base_source"] == "recipe:seed_alexnet_gray"
    assert study["base"]["model"] == "alexnet_gray" and study["base"]["batch_size"] == 35
    assert study["classes"] == ["normal", "bacterial", "viral"]
    assert study["train_images"] == sum(info["data"]["train_images"].values())


@pytest.mark.slow
def test_every_level_seed_and_rule_trains_every_epoch_with_its_learning_rate(batch_study: Path) -> None:
    trials = load_trials(batch_study)
    csv = (batch_study / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"config/batch_size", "config/lr_rule", "config/seed", "train_steps", "epoch_seconds"} <= set(csv)
    assert {"train_images_per_s", "train_loss", "train_acc", "val_loss", "val_acc", "val_balanced_acc"} <= set(csv)
    per_trial = trials.groupby("trial_id").agg(
        b=("config/batch_size", "first"),
        rule=("config/lr_rule", "first"),
        seed=("config/seed", "first"),
        lr=("config/lr", "first"),
        epochs=("epoch", "count"),
        status=("status", "first"),
    )
    # Each of the 2 x 2 x 2 combinations once, every trial the full 2 epochs, none stopped early.
    assert len(per_trial) == 8
    assert sorted(zip(per_trial.b, per_trial.rule, per_trial.seed)) == sorted(
        (b, r, s) for b in (8, 128) for r in ("fixed", "linear") for s in (0, 1)
    )
    assert (per_trial.epochs == 2).all() and (per_trial.status == "COMPLETED").all()
    assert not trials.duplicated(["trial_id", "epoch"]).any()
    base_lr = json.loads((batch_study / "run.json").read_text())["study"]["base"]["lr"]
    for row in per_trial.itertuples():
        assert row.lr == pytest.approx(base_lr * (row.b / 35 if row.rule == "linear" else 1.0))
    # Optimiser steps: the same epochs are 16x more steps at batch 8 than at 128 on these 120-odd images.
    n = json.loads((batch_study / "run.json").read_text())["study"]["train_images"]
    for (b, epoch), steps in trials.groupby(["config/batch_size", "epoch"])["train_steps"]:
        per_epoch = n // b + (n % b > 1)
        assert (steps == epoch * per_epoch).all(), (b, epoch, steps.tolist())


def test_the_study_definitions_and_the_learning_rate_rules() -> None:
    study = get_study("batch-size")
    levels = parse_levels(study, None, "cpu")
    assert len(levels) >= 5 and {1, 35, 300} <= set(levels) and min(levels) >= 1 and max(levels) <= 300
    assert parse_levels(study, None, "gpu") == levels
    assert level_lr(1e-4, 35, 140, "linear") == pytest.approx(4e-4)
    assert level_lr(1e-4, 35, 140, "sqrt") == pytest.approx(2e-4)
    assert level_lr(1e-4, 35, 140, "fixed") == 1e-4
    aug = get_study("augmentation")
    assert parse_levels(aug, None, "gpu") == list(AUGMENT_LEVELS)
    assert {"none", "seed", "all"} <= set(parse_levels(aug, None, "cpu"))
    assert AUGMENT_LEVELS["seed"] == {"hflip": 0.5, "trivial_augment": True}
    assert math.isclose(AUGMENT_LEVELS["all"]["rotate"], 15.0)


@pytest.mark.slow
def test_an_interrupted_augmentation_study_resumes_keeping_its_finished_trials(
    small_data: Path, tmp_path: Path
) -> None:
    """Ctrl+C stops the study with the resume hint; --resume runs the rest and leaves finished trials untouched."""
    run_dir = tmp_path / "runs" / "aug"
    # 4 epochs a trial: long enough that Ctrl+C, sent when the third trial has started, lands while trials still run
    # (with 2, a fast machine finished all four before the signal and the study ended without the resume hint).
    args = ["augmentation", "--data", str(small_data), "--levels", "none,seed", "--seeds", "2", "--epochs", "4"]
    args += ["--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "aug", "--no-report"]
    proc = subprocess.Popen(
        [PY, "-m", "search.study", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV
    )
    deadline = time.time() + 600
    while time.time() < deadline and len(list(run_dir.glob("*/params.json"))) < 3:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130 and b"python -m search.study --resume" in out, out[-2000:]
    before = load_trials(run_dir)
    done = {}
    for tid, df in before[before["status"] == "COMPLETED"].groupby("trial_id"):
        done[tid] = (run_dir / df["trial_dir"].iloc[0] / "result.json").read_text()
    assert 1 <= len(done) < 4

    resumed = _run(["--resume", str(run_dir)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = load_trials(run_dir)
    per_trial = after.groupby("trial_id").agg(
        level=("config/augmentation", "first"), seed=("config/seed", "first"), epochs=("epoch", "count")
    )
    assert sorted(zip(per_trial.level, per_trial.seed)) == [("none", 0), ("none", 1), ("seed", 0), ("seed", 1)]
    assert (after["status"] == "COMPLETED").all()
    # Every epoch of every trial exactly once, the trial running at Ctrl+C included: in trials.csv and in Ray's own
    # result.json of each trial (which keeps every epoch reported, a trial trained again from scratch included).
    assert all(epochs.tolist() == [1, 2, 3, 4] for _, epochs in after.groupby("trial_id")["epoch"])
    for trial_dir in after["trial_dir"].unique():
        lines = (run_dir / trial_dir / "result.json").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines if line.strip()] == [1, 2, 3, 4], trial_dir
    for tid, text in done.items():
        assert (run_dir / after.loc[after["trial_id"] == tid, "trial_dir"].iloc[0] / "result.json").read_text() == text
    # The level set the augmentation fields the trial trained with: none turns every op off, seed is flip + TA.
    first = after.groupby("trial_id").first()
    none, seed = first[first["config/augmentation"] == "none"], first[first["config/augmentation"] == "seed"]
    assert (none["config/hflip"] == 0).all() and (~none["config/trivial_augment"].astype(bool)).all()
    assert (seed["config/hflip"] == 0.5).all() and seed["config/trivial_augment"].astype(bool).all()
    assert (first["config/rotate"] == 0).all() and (first["config/model"] == "tinyvgg").all()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] is True and info["study"]["levels"] == {"augmentation": ["none", "seed"]}


def test_the_grid_lists_every_level_rule_and_seed_with_the_fields_each_level_sets() -> None:
    study = get_study("batch-size")
    base, source, _ = _base_config(StudySettings(study="batch-size"), None, "cpu")
    assert source == "recipe:seed_alexnet_gray" and base["batch_size"] == 35 and base["lr"] == 1e-4
    # The CPU base is the seed AlexNet as the search scales it, then at 64 px and quarter width so batch 1 finishes.
    assert (base["model"], base["image_size"], base["width"], base["channels"]) == ("alexnet_gray", "64", 0.25, 1)
    configs = trial_configs(study, base, [1, 35, 300], [0, 1], ["fixed", "sqrt"])
    assert len(configs) == 12 and configs[0]["batch_size"] == 1  # the slowest trials first
    assert {(c["batch_size"], c["lr_rule"], c["seed"]) for c in configs} == {
        (b, r, s) for b in (1, 35, 300) for r in ("fixed", "sqrt") for s in (0, 1)
    }
    for c in configs:
        assert c["lr"] == pytest.approx(1e-4 * (math.sqrt(c["batch_size"] / 35) if c["lr_rule"] == "sqrt" else 1))
        assert {k: v for k, v in c.items() if k not in ("batch_size", "lr", "lr_rule", "seed")} == {
            k: v for k, v in base.items() if k not in ("batch_size", "lr", "seed")
        }
    aug = get_study("augmentation")
    base, source, _ = _base_config(StudySettings(study="augmentation"), None, "cpu")
    assert source == "recipe:seed_tinyvgg" and base["hflip"] == 0.5 and base["trivial_augment"] is True
    by_level = {c["augmentation"]: c for c in trial_configs(aug, base, ["none", "rotate", "all"], [0], None)}
    assert [by_level["none"][op] for op in ("hflip", "trivial_augment", "rotate")] == [0.0, False, 0.0]
    assert [by_level["rotate"][op] for op in ("hflip", "trivial_augment", "rotate")] == [0.0, False, 15.0]
    assert (
        by_level["all"]["vflip"] == 0.5 and by_level["all"]["crop_scale"] == 0.5 and by_level["all"]["trivial_augment"]
    )


def test_a_base_config_from_a_best_config_json_runs_as_written(tmp_path: Path) -> None:
    from search.export import FORMAT

    doc = {
        "format": FORMAT,
        "config": {"model": "cifar_cnn", "width": 0.25, "image_size": "32", "batch_size": 16, "lr": 3e-3, "epochs": 9},
        "task": "pneumonia3class",
        "space": "pneumonia3class",
        "metric": "val_balanced_acc",
        "validation": {"epoch": 1, "val_balanced_acc": 0.5},
        "data": {"val_fraction": 0.2, "split_seed": 0},
    }
    path = tmp_path / "best_config.json"
    path.write_text(json.dumps(doc))
    settings = StudySettings(study="batch-size", base=str(path))
    from search.study import validate

    base, source, weights = _base_config(settings, validate(settings), "cpu")
    assert source == str(path) and weights == []
    assert (base["model"], base["width"], base["image_size"], base["batch_size"], base["lr"]) == (
        "cifar_cnn",
        0.25,
        "32",
        16,
        3e-3,
    )


def test_the_console_table_gives_each_level_in_the_grids_order_with_its_final_and_best_score() -> None:
    import pandas as pd

    rows = []
    for trial, (b, scores) in enumerate([(300, [0.3, 0.3]), (8, [0.5, 0.4]), (300, [0.3, 0.4]), (8, [0.6, 0.7])]):
        for epoch, score in enumerate(scores, start=1):
            rows.append(
                {"trial_id": f"t{trial}", "epoch": epoch, "config/batch_size": b, "val_balanced_acc": score}
                | {"epoch_seconds": 2.0 if b == 8 else 1.0}
            )
    table = level_summary(pd.DataFrame(rows), ["batch_size"])
    assert table["config/batch_size"].tolist() == [300, 8]
    assert table["trials"].tolist() == [2, 2] and table["epochs"].tolist() == [2, 2]
    assert table["final_mean"].tolist() == pytest.approx([0.35, 0.55])
    assert table["final_min"].tolist() == pytest.approx([0.3, 0.4]) and table["final_max"].tolist() == pytest.approx(
        [0.4, 0.7]
    )
    assert table["best_mean"].tolist() == pytest.approx([0.35, 0.6]) and table["epoch_s"].tolist() == [1.0, 2.0]
