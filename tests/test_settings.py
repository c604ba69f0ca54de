"""Flags + hardware -> the resolved search, without Ray: the defaults per profile and what run.json records."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from search.settings import PROFILE_DEFAULTS, SearchSettings, resolve, saved_settings

NOW = datetime(2026, 11, 26, 14, 0, 5, tzinfo=timezone.utc)


def _resolve(cpus: float = 2, gpus: float = 0, **flags) -> object:
    return resolve(
        SearchSettings(space="pneumonia3class", **flags),
        task="pneumonia3class",
        cluster_cpus=cpus,
        cluster_gpus=gpus,
        now=NOW,
    )


def test_a_cpu_machine_gets_the_cpu_defaults() -> None:
    r = _resolve()
    assert (r.profile, r.num_samples, r.max_epochs, r.grace_period, r.reduction_factor) == ("cpu", 20, 12, 1, 4)
    assert r.time_budget_s == 450.0 and r.gpus_per_trial == 0.0 and r.max_concurrent == 2
    assert (r.metric, r.mode, r.rung_metric, r.scheduler) == ("val_balanced_acc", "max", "val_auroc", "asha")
    assert r.name == "pneumonia3class-20261126-140005"
    assert r.fixed == {"epochs": 12, "seed": 0}


def test_a_gpu_cluster_gets_the_gpu_profile_one_gpu_a_trial_and_no_budget() -> None:
    r = _resolve(cpus=16, gpus=4)
    assert (r.profile, r.num_samples, r.max_epochs, r.grace_period) == ("gpu", 100, 30, 2)
    assert r.gpus_per_trial == 1.0 and r.time_budget_s is None and r.max_concurrent == 16
    assert _resolve(cpus=16, gpus=4, profile="cpu").profile == "cpu"


def test_a_budgeted_search_proposes_until_the_budget_ends_unless_num_samples_caps_it() -> None:
    r = _resolve()
    assert r.trial_limit is None, "the cpu default: trials until the 450 s budget ends"
    assert r.num_samples == 20 and r.epoch_share_s == pytest.approx(450 * 2 / 20), "the cost share keeps its 20"
    assert "trials until the budget ends" in r.describe()
    assert _resolve(num_samples=20).trial_limit == 20 and "20 trials" in _resolve(num_samples=20).describe()
    assert _resolve(time_budget_s=0).trial_limit == 20, "no budget: the profile's count"
    assert _resolve(cpus=16, gpus=4).trial_limit == 100
    assert _resolve(cpus=16, gpus=4, time_budget_s=3600).trial_limit is None


def test_flags_win_over_defaults() -> None:
    r = _resolve(num_samples=3, max_epochs=2, grace_period=5, time_budget_s=0, cpus_per_trial=0.5, name="x")
    assert r.num_samples == 3 and r.max_epochs == 2
    assert r.grace_period == 2, "the grace period never exceeds the epochs a trial trains"
    assert r.time_budget_s is None, "--time-budget 0 means none"
    assert r.max_concurrent == 4 and r.name == "x"


def test_fair_rungs_count_seconds_of_training_on_the_cpu_profile_and_epochs_elsewhere() -> None:
    assert _resolve(scheduler="fair").rung_unit_s == pytest.approx(450 * 2 / 40), "1/40 of the worker-seconds"
    assert _resolve(scheduler="fair", num_samples=40).rung_unit_s == pytest.approx(22.5), "whatever the trial count"
    assert "grace 1 x 22.5 s of training" in _resolve(scheduler="fair").describe()
    assert _resolve(scheduler="fair", rung_seconds=10).rung_unit_s == 10
    assert _resolve(scheduler="fair", rung_seconds=0).rung_unit_s is None, "--rung-seconds 0: epochs"
    assert _resolve(scheduler="fair", time_budget_s=0).rung_unit_s is None, "no budget to share"
    assert _resolve(cpus=16, gpus=4, scheduler="fair").rung_unit_s is None
    assert _resolve(scheduler="asha", rung_seconds=10).rung_unit_s is None, "ASHA's rungs are Ray's, in epochs"


def test_a_minimised_metric_minimises_the_rungs_too() -> None:
    r = _resolve(metric="val_loss")
    assert (r.mode, r.rung_metric) == ("min", "val_loss")
    r = _resolve(metric="val_loss", rung_metric="val_auroc")
    assert (r.mode, r.rung_metric) == ("min", "val_auroc")


def test_startup_trials_follow_the_recipes_unless_given() -> None:
    assert _resolve().startup_trials(4) == 6 and _resolve().startup_trials(0) == 5
    assert _resolve(startup_trials=2).startup_trials(4) == 2


def test_run_info_is_json_and_keeps_the_keys_readers_use() -> None:
    info = json.loads(json.dumps(_resolve().run_info()))
    for key in (
        "name",
        "space",
        "task",
        "metric",
        "mode",
        "profile",
        "max_epochs",
        "num_samples",
        "grace_period",
        "reduction_factor",
        "rung_metric",
        "storage",
    ):
        assert key in info, key
    # --resume rebuilds the flags from run.json exactly as they were given.
    assert SearchSettings(**info["settings"]) == SearchSettings(space="pneumonia3class")
    assert info["settings"]["num_samples"] is None and info["num_samples"] == PROFILE_DEFAULTS["cpu"]["num_samples"]


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_profile_default_is_set(profile: str) -> None:
    assert set(PROFILE_DEFAULTS[profile]) == {
        "num_samples",
        "max_epochs",
        "grace_period",
        "reduction_factor",
        "time_budget_s",
    }


def test_the_weights_policy_is_saved_and_resumed() -> None:
    info = json.loads(json.dumps(_resolve(weights="none").run_info()))
    assert info["settings"]["weights"] == "none" and saved_settings(info).weights == "none"
    del info["settings"]["weights"]  # a run.json from before --weights: those searches used the cache only
    assert saved_settings(info).weights == "local"
