"""The scheduler and searcher ``build_tuner`` makes, tested as Ray tests its schedulers: fake results, no training."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.tune.experiment import Experiment, Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import SearchGenerator

from search.settings import ResolvedSearch, SearchSettings, resolve
from search.tuner import make_scheduler, make_searcher
from spaces import get_space, recipes_for
from trainables.config import TrialConfig

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _resolved(**flags) -> ResolvedSearch:
    settings = SearchSettings(space="pneumonia3class", max_epochs=3, grace_period=1, reduction_factor=2, **flags)
    return resolve(settings, task="pneumonia3class", cluster_cpus=8, cluster_gpus=0)


def _epoch(trial: Trial, epoch: int, **metrics: float) -> dict:
    result = {"training_iteration": epoch, "epoch": epoch, **metrics}
    trial.update_last_result(result)
    return result


def _feed(scheduler, *results: tuple[Trial, int, dict[str, float]]) -> list[str]:
    """Each (trial, epoch, metrics) in turn, as Tune would report it; the scheduler's decisions."""
    for trial in dict.fromkeys(t for t, _, _ in results):
        scheduler.on_trial_add(None, trial)
    return [scheduler.on_trial_result(None, t, _epoch(t, e, **m)) for t, e, m in results]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({}, [CONTINUE, STOP]), ({"rung_metric": "val_balanced_acc"}, [CONTINUE, CONTINUE])],
    ids=["default-rungs-on-auroc", "rungs-on-balanced-acc"],
)
def test_asha_compares_trials_at_its_rung_on_the_rung_metric_not_the_search_metric(flags: dict, expected: list) -> None:
    scheduler, tuner_metric, tuner_mode = make_scheduler(_resolved(**flags))
    assert (tuner_metric, tuner_mode) == (None, None), "Tune refuses a metric on both the Tuner and ASHA"
    learning, majority = Trial("__fake", stub=True), Trial("__fake", stub=True)
    # After epoch 1 the first trial still answers the majority class (balanced accuracy 1/3) but ranks images well;
    # the second has the better balanced accuracy and the worse AUROC. Rungs on AUROC keep the first, stop the second.
    decisions = _feed(
        scheduler,
        (learning, 1, {"val_auroc": 0.90, "val_balanced_acc": 0.33}),
        (majority, 1, {"val_auroc": 0.60, "val_balanced_acc": 0.80}),
    )
    assert decisions == expected


def test_a_loss_is_minimised_at_the_rungs() -> None:
    scheduler, _, _ = make_scheduler(_resolved(metric="val_loss"))
    low, high = Trial("__fake", stub=True), Trial("__fake", stub=True)
    assert _feed(scheduler, (low, 1, {"val_loss": 0.4}), (high, 1, {"val_loss": 0.9})) == [CONTINUE, STOP]
    scheduler, _, _ = make_scheduler(_resolved(metric="val_loss"))
    low, high = Trial("__fake", stub=True), Trial("__fake", stub=True)
    assert _feed(scheduler, (high, 1, {"val_loss": 0.9}), (low, 1, {"val_loss": 0.4})) == [CONTINUE, CONTINUE]


def test_asha_stops_every_trial_at_max_epochs() -> None:
    scheduler, _, _ = make_scheduler(_resolved())
    trial = Trial("__fake", stub=True)
    decisions = _feed(scheduler, *[(trial, e, {"val_auroc": 0.5 + e / 10}) for e in (1, 2, 3)])
    assert decisions == [CONTINUE, CONTINUE, STOP]


def test_fifo_stops_nothing_and_gives_the_tuner_the_search_metric() -> None:
    scheduler, tuner_metric, tuner_mode = make_scheduler(_resolved(scheduler="fifo", metric="val_loss"))
    assert (tuner_metric, tuner_mode) == ("val_loss", "min")
    good, bad = Trial("__fake", stub=True), Trial("__fake", stub=True)
    assert _feed(scheduler, (good, 1, {"val_loss": 0.4}), (bad, 1, {"val_loss": 5.0})) == [CONTINUE, CONTINUE]


def _trainable(config: dict) -> None:  # never run: the generator only builds trials
    del config


def test_param_space_carries_epochs_and_seed_into_every_suggested_config(tmp_path: Path) -> None:
    r = _resolved(seed=7)
    recipes = [recipe.config for recipe in recipes_for("cpu")]
    generator = SearchGenerator(make_searcher(r, get_space("pneumonia3class", "cpu"), recipes, tmp_path))
    # What build_tuner's Tuner does: the fixed values are the experiment's config (its param_space).
    generator.add_configurations(
        [Experiment("t", run=_trainable, config=r.fixed, storage_path=str(tmp_path), num_samples=6)]
    )
    configs = []
    for _ in range(6):
        trial = generator.next_trial()
        generator.on_trial_complete(trial.trial_id, {"val_balanced_acc": 0.5, "training_iteration": 1})
        configs.append(trial.config)
    assert [c["recipe"] for c in configs[:4]] == [recipe["recipe"] for recipe in recipes], "recipes first"
    for config in configs:
        assert (config["epochs"], config["seed"]) == (3, 7)
        TrialConfig.from_dict(config)  # every key a TrialConfig field, every value valid
    assert (tmp_path / "study.db").is_file()


@pytest.mark.parametrize("flags", [{}, {"startup_trials": 2}])
def test_the_searcher_is_seeded_tpe_with_the_study_in_the_run_directory(tmp_path: Path, flags: dict) -> None:
    r = _resolved(**flags)
    limiter = make_searcher(r, get_space("pneumonia3class", "cpu"), [], tmp_path)
    assert limiter.max_concurrent == r.max_concurrent
    sampler = limiter.searcher._sampler
    assert sampler._n_startup == r.startup_trials(0) and sampler._share == r.local_share
    tpe = sampler._base
    assert tpe._n_startup_trials == r.startup_trials(0) and r.startup_trials(0) == flags.get("startup_trials", 5)


def test_optuna_is_told_pruned_for_early_stops_and_the_best_epoch_for_finished_trials(tmp_path: Path) -> None:
    """Fake results through the real searcher: a trial ASHA stopped after one epoch is PRUNED (its epoch kept as an
    intermediate value), a trial that ran all 3 epochs is COMPLETE at its best epoch, not its last."""
    import optuna

    r = _resolved(seed=0)
    limiter = make_searcher(r, get_space("pneumonia3class", "cpu"), [], tmp_path)
    generator = SearchGenerator(limiter)
    generator.add_configurations(
        [Experiment("t", run=_trainable, config=r.fixed, storage_path=str(tmp_path), num_samples=3)]
    )
    finished, stopped, failed = (generator.next_trial() for _ in range(3))
    # As Tune does it: every result but a trial's last goes to on_trial_result, the last to on_trial_complete only.
    for epoch, value in enumerate([0.5, 0.72], start=1):
        generator.on_trial_result(finished.trial_id, {"val_balanced_acc": value, "training_iteration": epoch})
    generator.on_trial_complete(finished.trial_id, {"val_balanced_acc": 0.6, "training_iteration": 3})
    generator.on_trial_complete(stopped.trial_id, {"val_balanced_acc": 0.41, "training_iteration": 1})
    # A stopped trial that reports again (a --resume that trained it once more) changes nothing in the study.
    generator.on_trial_result(stopped.trial_id, {"val_balanced_acc": 0.5, "val_loss": 0.9, "training_iteration": 2})
    generator.on_trial_result(failed.trial_id, {"val_balanced_acc": 0.3, "training_iteration": 1})
    generator.on_trial_complete(failed.trial_id, None, error=True)
    study = optuna.load_study(study_name=r.name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].value == pytest.approx(0.72)  # the best epoch, which export and the leaderboard also count
    assert trials[0].intermediate_values == {1: 0.5, 2: 0.72, 3: 0.6}
    assert trials[1].intermediate_values == {1: 0.41}  # Optuna keeps a pruned trial at its last reported value


def test_trials_a_finished_search_left_running_are_pruned_in_the_study(tmp_path: Path) -> None:
    import optuna

    from search.searcher import close_running_trials

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    done, cut = study.ask(), study.ask()
    done.report(0.5, 1)
    study.tell(done, 0.5)
    cut.report(0.4, 1)  # the time budget ended the search during its second epoch
    assert close_running_trials(tmp_path / "study.db", "s") == 1
    states = [
        t.state.name for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}").trials
    ]
    assert states == ["COMPLETE", "PRUNED"]


def test_on_the_cpu_profile_proposals_keep_to_what_a_fair_share_of_the_budget_affords(tmp_path: Path) -> None:
    """A 60 s budget for 20 trials on 2 CPUs leaves 6 s an epoch: dearer proposals are skipped and redrawn; the
    recipes, baselines, are proposed whatever they cost. A skipped trial is FAIL with a note: TPE leaves it out, so a
    model is not taken for a bad one because its dear image sizes were skipped."""
    import optuna

    from spaces.cost import estimate_epoch_s

    settings = SearchSettings(space="pneumonia3class", time_budget_s=60, num_samples=20)
    r = resolve(settings, task="pneumonia3class", cluster_cpus=2, cluster_gpus=0)
    assert r.epoch_share_s == pytest.approx(6.0)
    recipes = [recipe.config for recipe in recipes_for("cpu")]
    generator = SearchGenerator(make_searcher(r, get_space("pneumonia3class", "cpu"), recipes, tmp_path))
    generator.add_configurations(
        [Experiment("t", run=_trainable, config=r.fixed, storage_path=str(tmp_path), num_samples=16)]
    )
    configs = []
    for _ in range(16):
        trial = generator.next_trial()
        generator.on_trial_complete(trial.trial_id, {"val_balanced_acc": 0.5, "training_iteration": 1})
        configs.append(trial.config)
    assert max(estimate_epoch_s(c) for c in configs[:4]) > 6.0, "a recipe dearer than the share still runs"
    assert all(estimate_epoch_s(c) <= 6.0 for c in configs[4:]), [estimate_epoch_s(c) for c in configs[4:]]
    study = optuna.load_study(study_name=r.name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    skipped = [t for t in study.trials if "skipped" in t.user_attrs]
    assert skipped and all(t.state.name == "FAIL" and not t.intermediate_values for t in skipped)
    assert "budget share 6 s" in skipped[0].user_attrs["skipped"]


def test_what_a_proposal_may_cost_is_weighed_at_the_speed_this_machine_measured(tmp_path: Path) -> None:
    """The cost table was measured on one machine. Where resnet18's epochs take three times the table's time (the
    recipes say so first) and the small CNNs' take the table's, no resnet18 fits the 12 s share any more, not even at
    64 px (10.9 s by the table), while the small CNNs keep the whole share; the skip note says why."""
    import optuna

    from spaces.cost import estimate_epoch_s

    r = resolve(
        SearchSettings(space="pneumonia3class", time_budget_s=120, num_samples=20),
        task="pneumonia3class",
        cluster_cpus=2,
        cluster_gpus=0,
    )
    assert r.epoch_share_s == pytest.approx(12.0)
    recipes = [recipe.config for recipe in recipes_for("cpu")]
    generator = SearchGenerator(make_searcher(r, get_space("pneumonia3class", "cpu"), recipes, tmp_path))
    generator.add_configurations(
        [Experiment("t", run=_trainable, config=r.fixed, storage_path=str(tmp_path), num_samples=24)]
    )
    configs = []
    for _ in range(24):
        trial = generator.next_trial()
        slowness = 3.0 if trial.config["model"] == "resnet18" else 1.0
        seconds = slowness * estimate_epoch_s(trial.config)
        result = {"val_balanced_acc": 0.5, "training_iteration": 1, "epoch_seconds": seconds}
        generator.on_trial_result(trial.trial_id, result)
        generator.on_trial_complete(trial.trial_id, result)
        configs.append(trial.config)
    proposals = configs[4:]
    assert all(c["model"] != "resnet18" and estimate_epoch_s(c) <= 12.0 for c in proposals), proposals
    study = optuna.load_study(study_name=r.name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    skipped = [t for t in study.trials if "skipped" in t.user_attrs]
    resnets = [t.user_attrs["skipped"] for t in skipped if t.params["model"] == "resnet18"]
    assert resnets and all("x 3.00, this machine's measured speed" in note for note in resnets), resnets
    assert any(t.params.get("image_size") == "64" for t in skipped if t.params["model"] == "resnet18"), (
        "no resnet18 the table alone would have admitted (64 px) was skipped"
    )


def test_the_gpu_profile_and_a_search_without_budget_skip_nothing() -> None:
    gpu = resolve(SearchSettings(space="pneumonia3class"), task="pneumonia3class", cluster_cpus=8, cluster_gpus=1)
    unbounded = resolve(
        SearchSettings(space="pneumonia3class", time_budget_s=0), task="pneumonia3class", cluster_cpus=2, cluster_gpus=0
    )
    assert gpu.epoch_share_s is None and unbounded.epoch_share_s is None
    default = resolve(SearchSettings(space="pneumonia3class"), task="pneumonia3class", cluster_cpus=2, cluster_gpus=0)
    assert default.full_trainings == 0 and default.epoch_share_s == pytest.approx(45.0)


def test_full_trainings_keeps_to_proposals_the_budget_can_train_to_the_end_that_many_times() -> None:
    """--full-trainings 4: 450 s x 2 CPUs / (4 finishers x 12 epochs) = 18.75 s an epoch: resnet18 at 64 px is
    proposed, at 96 px it is not (it could be trained to the end only twice in the whole budget). Off by default."""
    from spaces.cost import estimate_epoch_s

    four_finishers = SearchSettings(space="pneumonia3class", full_trainings=4)
    four = resolve(four_finishers, task="pneumonia3class", cluster_cpus=2, cluster_gpus=0)
    assert four.full_trainings == 4
    assert four.epoch_share_s == pytest.approx(18.75)
    resnet = {"model": "resnet18", "batch_size": 32}
    assert estimate_epoch_s({**resnet, "image_size": "64"}) < four.epoch_share_s
    assert estimate_epoch_s({**resnet, "image_size": "96"}) > four.epoch_share_s
    two_finishers = SearchSettings(space="pneumonia3class", full_trainings=2)
    two = resolve(two_finishers, task="pneumonia3class", cluster_cpus=2, cluster_gpus=0)
    assert two.epoch_share_s == pytest.approx(37.5)
