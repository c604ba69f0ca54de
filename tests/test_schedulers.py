"""Fair rungs and the progressive top rung (``search.schedulers``), tested as Ray tests ASHA: fake trials and results
fed to the scheduler, a stand-in for Tune's controller that only lists trials and stops them, no training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ray.tune.experiment import Trial

from search.schedulers import CONTINUE, PAUSE, STOP, FairRungs, FairRungScheduler, ResumableASHA, rung_levels
from search.settings import SearchSettings, resolve
from search.tuner import make_scheduler, searcher_concurrency


class _Controller:
    """What the scheduler uses of Tune's controller: the trials, and stopping one (a paused one here)."""

    def __init__(self) -> None:
        self.trials: list[Trial] = []

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        trial.set_status(Trial.TERMINATED)


def _scheduler(**kw) -> tuple[FairRungScheduler, _Controller]:
    args = {"metric": "val_auroc", "mode": "max", "grace_period": 1, "reduction_factor": 4, "max_t": 12}
    args.update({"max_concurrent": 2, "epsilon": 0.0}, **kw)
    return FairRungScheduler(**args), _Controller()


def _trial(controller: _Controller, scheduler: FairRungScheduler, name: str, status: str = Trial.RUNNING) -> Trial:
    trial = Trial("__fake", stub=True, trial_id=name)
    trial.set_status(status)
    controller.trials.append(trial)
    scheduler.on_trial_add(controller, trial)
    return trial


def _report(scheduler: FairRungScheduler, controller: _Controller, trial: Trial, epoch: int, value: float) -> str:
    """One epoch's rung metric as Tune hands it over; a PAUSE or STOP takes effect as Tune would apply it."""
    decision = scheduler.on_trial_result(controller, trial, {"training_iteration": epoch, scheduler.metric: value})
    trial.set_status({PAUSE: Trial.PAUSED, STOP: Trial.TERMINATED}.get(decision, Trial.RUNNING))
    return decision


class _NoFolderYet:
    """Ray's storage context of a trial that has not started: asking for its folder raises."""

    @property
    def trial_fs_path(self) -> str:
        raise RuntimeError("Should not access `trial_fs_path` without setting `trial_dir_name`")


def _restore(
    trials: list[Trial], written: dict[str, list[dict]], tmp_path: Path, status: dict[str, str], new=None
) -> tuple[Any, _Controller]:
    """What ``--resume`` hands the scheduler: a new one (``new()``, a fair one by default), the same trials with the
    statuses Tune saved (``status``; a PAUSED trial comes back PENDING), each with its ``result.json`` as written so
    far."""
    import json
    from types import SimpleNamespace

    from pyarrow.fs import LocalFileSystem

    scheduler, controller = (new or _scheduler)()
    for trial in trials:
        trial.set_status(status.get(trial.trial_id, trial.status))
        trial.storage = _NoFolderYet()
        if written[trial.trial_id]:
            folder = tmp_path / f"{trial.trial_id}-{len(written[trial.trial_id])}"
            folder.mkdir(exist_ok=True)
            (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in written[trial.trial_id]))
            trial.storage = SimpleNamespace(trial_fs_path=str(folder), storage_filesystem=LocalFileSystem())
            trial.update_last_result(written[trial.trial_id][-1])
        controller.trials.append(trial)
        scheduler.on_trial_add(controller, trial)
    return scheduler, controller


def test_a_resumed_run_rebuilds_its_rungs_from_the_results_its_trials_reported(tmp_path: Path) -> None:
    """Tune saves no scheduler state, so ``--resume`` hands back a fair scheduler with empty rungs, and Tune restores
    a paused trial as PENDING, like a new one. The rungs are rebuilt from each trial's ``result.json`` (in the order
    reported): the trial its rung let through resumes before any new trial, one its rung stopped is not trained again
    (Ray 2.60 can save a stopped paused trial as still paused), one waiting at the top rung waits for a free worker,
    and a new trial meets the rung's earlier results instead of an empty rung."""
    before, controller = _scheduler()
    trials = [_trial(controller, before, f"t{i}", Trial.PENDING if i == 4 else Trial.RUNNING) for i in range(5)]
    written: dict[str, list[dict]] = {t.trial_id: [] for t in trials}
    clock = [1_700_000_000]

    def report(scheduler, ctl, trial: Trial, epoch: int, value: float) -> str:
        clock[0] += 1
        row = {"training_iteration": epoch, "val_auroc": value, "timestamp": clock[0], "epoch_seconds": 2.0}
        written[trial.trial_id].append(row)
        return _report(scheduler, ctl, trial, epoch, value)

    for trial, value in zip(trials[:4], (0.6, 0.5, 0.7, 0.4)):
        report(before, controller, trial, 1, value)
    assert before.rungs.promoted == {"t2"} and before.rungs.rejected == set()
    assert before.choose_trial_to_run(controller, now=0.0) is trials[2]

    # Killed here. Tune saved t0 (stopped while paused) as PAUSED, and restores every paused trial as PENDING.
    ended, pending = Trial.TERMINATED, Trial.PENDING
    after, restored = _restore(trials, written, tmp_path, {"t0": pending, "t1": ended, "t2": pending, "t3": ended})
    assert after.choose_trial_to_run(restored, now=0.0) is trials[2], "the promoted trial first, not the new one"
    assert trials[0].status == ended, "stopped at its rung before: not trained again"
    assert after.rungs.results == before.rungs.results
    trials[4].set_status(Trial.RUNNING)
    assert report(after, restored, trials[4], 1, 0.65) == STOP, "below the rung's cut of 0.7 among five"

    trials[2].set_status(Trial.RUNNING)
    for epoch in (2, 3):
        assert report(after, restored, trials[2], epoch, 0.7 + epoch / 100) == CONTINUE
    assert report(after, restored, trials[2], 4, 0.75) == PAUSE, "at the top rung: waits for it to grow"
    # Killed again, with a new trial queued: t2 waits at the top rung, so the new trial runs first.
    trials.append(_trial(restored, after, "t5", Trial.PENDING))
    written["t5"] = []
    again, ctl = _restore(trials, written, tmp_path, {t.trial_id: t.status for t in trials} | {"t2": pending})
    assert again.choose_trial_to_run(ctl, now=0.0) is trials[5], "a waiting trial is not started as a new one"
    trials[5].set_status(Trial.RUNNING)
    assert again.choose_trial_to_run(ctl, now=0.0) is trials[2], "a worker is free: the waiting trial resumes"


def _asha() -> tuple[ResumableASHA, _Controller]:
    return ResumableASHA(metric="val_auroc", mode="max", max_t=12, grace_period=1, reduction_factor=4), _Controller()


def test_a_resumed_asha_search_judges_new_results_against_the_rungs_it_had(tmp_path: Path) -> None:
    """The default scheduler after ``--resume``: Ray's ASHA starts with empty rungs, so the first result at a rung
    would go on whatever the trials before the interrupt scored there, and a trial that was running would be judged
    again at its next epoch as if it had never reached the rung. The rungs are rebuilt from the trials'
    ``result.json``: the decisions are those the uninterrupted run takes."""
    before, controller = _asha()
    trials = [_trial(controller, before, f"t{i}") for i in range(4)]
    written: dict[str, list[dict]] = {t.trial_id: [] for t in trials}
    for clock, (trial, value) in enumerate(zip(trials, (0.6, 0.5, 0.7, 0.4))):
        written[trial.trial_id].append(
            {"training_iteration": 1, "val_auroc": value, "timestamp": 1_700_000_000 + clock}
        )
        _report(before, controller, trial, 1, value)
    assert [t.status for t in trials] == [Trial.RUNNING, Trial.TERMINATED, Trial.RUNNING, Trial.TERMINATED]

    # Killed here: t0 and t2 were running, and Tune restores them to run on from their epoch-1 checkpoints.
    pending = Trial.PENDING
    after, restored = _restore(trials, written, tmp_path, {"t0": pending, "t2": pending}, new=_asha)
    newcomer = _trial(restored, after, "t4")
    assert _report(after, restored, newcomer, 1, 0.62) == STOP, "below the cut of the rung's five results"
    first_rung = after._brackets[0]._rungs[-1][1]  # Ray keeps the rungs highest first
    assert first_rung == {"t0": 0.6, "t1": 0.5, "t2": 0.7, "t3": 0.4, "t4": 0.62}
    trials[0].set_status(Trial.RUNNING)
    assert _report(after, restored, trials[0], 2, 0.3) == CONTINUE, "judged at its rung once, before the interrupt"
    assert _report(after, restored, trials[0], 4, 0.9) == CONTINUE
    assert after._brackets[0]._rungs[0][1] == {"t0": 0.9}


def test_rungs_are_grace_times_reduction_powers_capped_at_max_t() -> None:
    assert rung_levels(1, 4, 12) == [1, 4, 12]
    assert rung_levels(2, 2, 12) == [2, 4, 8, 12]
    with pytest.raises(ValueError, match="reduction_factor >= 2"):
        rung_levels(1, 1, 12)


def test_a_recipe_alone_at_the_first_rung_pauses_instead_of_going_on() -> None:
    """ASHA lets the first trial at a rung through; fair rungs make it wait for peers (and free its worker)."""
    scheduler, controller = _scheduler()
    recipe = _trial(controller, scheduler, "recipe")
    assert _report(scheduler, controller, recipe, 1, 0.80) == PAUSE
    assert recipe.status == Trial.PAUSED
    pending = _trial(controller, scheduler, "proposal", status=Trial.PENDING)
    assert scheduler.choose_trial_to_run(controller) is pending, "the freed worker goes to a new trial"


def test_a_paused_recipe_is_promoted_once_enough_peers_report_and_resumed_first() -> None:
    scheduler, controller = _scheduler()
    recipe = _trial(controller, scheduler, "recipe")
    assert _report(scheduler, controller, recipe, 1, 0.85) == PAUSE
    peers = [_trial(controller, scheduler, f"p{i}") for i in range(3)]
    assert _report(scheduler, controller, peers[0], 1, 0.70) == PAUSE
    assert _report(scheduler, controller, peers[1], 1, 0.60) == PAUSE
    # The fourth result fills the rung (min_peers = reduction factor = 4): the cut is the best of four, the recipe.
    assert _report(scheduler, controller, peers[2], 1, 0.65) == STOP
    assert [t.status for t in peers[:2]] == [Trial.TERMINATED, Trial.TERMINATED], "the paused losers are stopped"
    waiting = _trial(controller, scheduler, "new", status=Trial.PENDING)
    assert scheduler.choose_trial_to_run(controller) is recipe, "a promoted trial goes before a new one"
    recipe.set_status(Trial.RUNNING)
    assert _report(scheduler, controller, recipe, 2, 0.86) == CONTINUE
    assert scheduler.choose_trial_to_run(controller) is waiting


def test_a_recipe_that_loses_its_rung_is_stopped_there() -> None:
    scheduler, controller = _scheduler()
    recipe = _trial(controller, scheduler, "recipe")
    assert _report(scheduler, controller, recipe, 1, 0.60) == PAUSE
    others = [_trial(controller, scheduler, f"p{i}") for i in range(3)]
    decisions = [_report(scheduler, controller, t, 1, v) for t, v in zip(others, (0.70, 0.75, 0.90))]
    assert decisions == [PAUSE, PAUSE, CONTINUE]
    assert recipe.status == Trial.TERMINATED
    assert scheduler.rungs.results[1]["recipe"] == 0.60, "its score at the rung stays recorded"


def test_a_loss_is_minimised_at_the_rungs() -> None:
    scheduler, controller = _scheduler(metric="val_loss", mode="min", min_peers=2, reduction_factor=2)
    low, high = _trial(controller, scheduler, "low"), _trial(controller, scheduler, "high")
    assert _report(scheduler, controller, high, 1, 0.9) == PAUSE
    assert _report(scheduler, controller, low, 1, 0.4) == CONTINUE
    assert high.status == Trial.TERMINATED


def _top_rung_of_two(scheduler: FairRungScheduler, controller: _Controller, at_two: tuple[float, float]) -> list[Trial]:
    """Rungs 1, 2, 4, ... (reduction factor 2, 4 peers a rung): a and b win rung 1 (a ahead of b there) and reach the
    top rung, 2, with ``at_two``. Returns [a, b]."""
    assert scheduler.rungs.levels[:3] == [1, 2, 4] and scheduler.rungs.top == 2, "the top rung starts at the second"
    a, b = _trial(controller, scheduler, "a"), _trial(controller, scheduler, "b")
    losers = [_trial(controller, scheduler, f"l{i}") for i in range(2)]
    decisions = [_report(scheduler, controller, t, 1, v) for t, v in zip((a, b, *losers), (0.90, 0.85, 0.50, 0.55))]
    assert decisions == [PAUSE, PAUSE, PAUSE, STOP]
    assert scheduler.choose_trial_to_run(controller) is a, "promoted, best first"
    for trial, value in zip((a, b), at_two):
        trial.set_status(Trial.RUNNING)
        assert _report(scheduler, controller, trial, 2, value) == PAUSE, "waits at the top rung"
    return [a, b]


def test_the_top_rung_stays_low_while_the_ranking_of_the_top_trials_holds() -> None:
    scheduler, controller = _scheduler(reduction_factor=2, min_peers=4)
    _top_rung_of_two(scheduler, controller, (0.95, 0.88))  # a still ahead of b
    assert scheduler.rungs.top == 2 and scheduler.rungs.growths == []


def test_the_top_rung_grows_when_the_ranking_of_the_top_trials_changes() -> None:
    scheduler, controller = _scheduler(reduction_factor=2, min_peers=4)
    a, b = _top_rung_of_two(scheduler, controller, (0.88, 0.95))  # b overtakes a between rungs 1 and 2
    assert scheduler.rungs.top == 4 and scheduler.rungs.growths == [4]
    # Rung 2 is an ordinary rung now, still short of 4 peers: both wait, and a free worker takes b, now the better.
    assert scheduler.choose_trial_to_run(controller) is b
    b.set_status(Trial.RUNNING)
    assert _report(scheduler, controller, b, 3, 0.95) == CONTINUE, "rung 2 is behind it: it trains on"


def test_a_swap_smaller_than_the_noise_does_not_grow_the_top_rung() -> None:
    scheduler, controller = _scheduler(reduction_factor=2, min_peers=4, epsilon=0.05)
    _top_rung_of_two(scheduler, controller, (0.90, 0.92))  # b ahead by 0.02 < epsilon at rung 2
    assert scheduler.rungs.top == 2


def test_epsilon_defaults_to_the_median_epoch_to_epoch_change() -> None:
    rungs = FairRungs(1, 4, 12)
    for epoch, value in enumerate((0.50, 0.60, 0.62, 0.65), start=1):
        rungs.on_result("t", epoch, value)
    assert rungs.noise() == pytest.approx(0.03)


def test_no_worker_idles_when_only_paused_trials_remain_and_the_best_standing_resumes_first() -> None:
    scheduler, controller = _scheduler()
    weak, strong, mid = (_trial(controller, scheduler, n) for n in ("weak", "strong", "mid"))
    for trial, value in ((weak, 0.60), (strong, 0.90), (mid, 0.75)):
        assert _report(scheduler, controller, trial, 1, value) == PAUSE  # 3 results < 4 peers: all wait
    # No new trial (the searcher is done) and both workers free: the best paused trial is resumed, then the next.
    assert scheduler.choose_trial_to_run(controller) is strong
    strong.set_status(Trial.RUNNING)
    assert scheduler.choose_trial_to_run(controller) is mid
    mid.set_status(Trial.RUNNING)
    assert scheduler.choose_trial_to_run(controller) is None, "both workers busy: the weak one keeps waiting"


def test_search_run_builds_the_fair_scheduler_and_leaves_room_for_paused_trials() -> None:
    settings = SearchSettings(space="pneumonia3class", scheduler="fair")
    r = resolve(settings, task="pneumonia3class", cluster_cpus=2, cluster_gpus=0)
    scheduler, metric, mode = make_scheduler(r)
    assert isinstance(scheduler, FairRungScheduler) and (metric, mode) == (None, None)
    assert scheduler.rungs.levels == [1, 4, 12] and scheduler.rungs.min_peers == 4
    assert searcher_concurrency(r) == 2 + 4
    assert "fair rungs on val_auroc" in r.describe()


def test_a_trial_rejected_while_its_pause_is_still_being_saved_is_stopped_once_paused_never_resumed() -> None:
    """Tune marks a trial PAUSED only after its checkpoint is saved; a rung may decide against it before that."""
    scheduler, controller = _scheduler(reduction_factor=2, min_peers=2)
    slow, good = _trial(controller, scheduler, "slow"), _trial(controller, scheduler, "good")
    assert scheduler.on_trial_result(controller, slow, {"training_iteration": 1, "val_auroc": 0.5}) == PAUSE
    assert slow.status == Trial.RUNNING  # the pause is in flight
    assert _report(scheduler, controller, good, 1, 0.9) == CONTINUE
    assert slow.status == Trial.RUNNING, "not stopped mid-save"
    slow.set_status(Trial.PAUSED)  # the save completed
    good.set_status(Trial.TERMINATED)
    assert scheduler.choose_trial_to_run(controller) is None, "a free worker does not resume a rejected trial"
    assert slow.status == Trial.TERMINATED


def _toy_trainable(config: dict) -> None:
    """Four 'epochs' scoring ``q + 0.01 x epoch``, a checkpoint each, resuming from one: Tune's pause and resume
    path without the cost of training a model."""
    import json
    import tempfile

    from ray import tune
    from ray.tune import Checkpoint

    start = 0
    if checkpoint := tune.get_checkpoint():
        with checkpoint.as_directory() as d:
            start = json.loads((Path(d) / "state.json").read_text())["epoch"]
    for epoch in range(start + 1, 5):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "state.json").write_text(json.dumps({"epoch": epoch}))
            result = {"epoch": epoch, "val_auroc": config["q"] + 0.01 * epoch, "resumed_from": start}
            tune.report(result, checkpoint=Checkpoint.from_directory(d))


@pytest.mark.slow
def test_real_tune_pauses_and_resumes_from_checkpoints_and_stops_rejected_trials(tmp_path) -> None:
    """Real Ray Tune, 2 workers, rungs 1, 2, 4: the first trial waits at rung 1 for a peer and loses (stopped after
    one epoch); trials that waited resume from their checkpoint and never train an epoch twice; the search ends."""
    import ray
    from ray import tune

    here = Path(__file__).resolve().parent  # the workers import this module's trainable by name
    pythonpath = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}
    )
    try:
        scheduler, _ = _scheduler(reduction_factor=2, max_t=4)
        tuner = tune.Tuner(
            tune.with_resources(_toy_trainable, {"cpu": 1}),
            param_space={"q": tune.grid_search([0.5, 0.9, 0.3, 0.7, 0.6, 0.8])},
            # Room for paused trials beside the two running ones, as search.tuner.searcher_concurrency gives.
            tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=4, reuse_actors=False),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="toy", verbose=0),
        )
        results = {r.config["q"]: r.metrics_dataframe for r in tuner.fit()}
    finally:
        ray.shutdown()
    for q, df in results.items():
        assert list(df["epoch"]) == list(range(1, len(df) + 1)), (q, list(df["epoch"]))
        assert list(df["training_iteration"]) == list(df["epoch"])
    assert len(results[0.5]) == 1, "paused alone at rung 1, then beaten by 0.9: stopped, never resumed"
    assert len(results[0.9]) == 4 and results[0.9]["resumed_from"].max() >= 1, "waited, then went on from a checkpoint"


def test_near_the_deadline_the_leader_is_trained_to_the_end_before_any_new_trial() -> None:
    """A short search must not explore until the budget cuts everything: when the time left is what the best paused
    trial needs to reach max_t (its median epoch time x epochs left, plus one epoch), it is resumed to the end."""
    scheduler, controller = _scheduler(time_budget_s=450.0)
    scheduler.choose_trial_to_run(controller, now=0.0)  # Tune asks for a first trial: the budget's clock starts
    trials = [_trial(controller, scheduler, n) for n in ("a", "b", "c", "d")]
    for trial, value in zip([trials[0], trials[2], trials[3], trials[1]], (0.70, 0.60, 0.80, 0.90)):
        result = {"training_iteration": 1, "val_auroc": value, "time_this_iter_s": 20.0}
        decision = scheduler.on_trial_result(controller, trial, result)
        trial.set_status({PAUSE: Trial.PAUSED, STOP: Trial.TERMINATED}.get(decision, Trial.RUNNING))
    assert trials[1].status == Trial.RUNNING  # b, fourth at rung 1, wins it and goes on to rung 4 (the top) ...
    for epoch in (2, 3, 4):
        decision = scheduler.on_trial_result(
            controller, trials[1], {"training_iteration": epoch, "val_auroc": 0.9, "time_this_iter_s": 20.0}
        )
    assert decision == PAUSE  # ... where it waits for the top rung to grow
    trials[1].set_status(Trial.PAUSED)
    new = _trial(controller, scheduler, "new", Trial.PENDING)
    # b needs 8 epochs x 20 s = 160 s (+ one epoch of slack): at 200 s left a new trial still comes first ...
    assert scheduler.choose_trial_to_run(controller, now=250.0) is new
    # ... at 180 s left b is resumed, and from then on it goes through every rung to max_t.
    assert scheduler.choose_trial_to_run(controller, now=270.0) is trials[1]
    trials[1].set_status(Trial.RUNNING)
    for epoch in range(5, 12):
        assert _report(scheduler, controller, trials[1], epoch, 0.9) == CONTINUE
    assert _report(scheduler, controller, trials[1], 12, 0.9) == STOP


def test_the_leader_is_the_best_paused_trial_at_the_highest_rung_and_needs_its_own_epoch_times() -> None:
    rungs = FairRungs(1, 2, 8, min_peers=3, epsilon=0.0)
    assert rungs.on_result("fast", 1, 0.9, 10.0) == PAUSE
    assert rungs.on_result("slow", 1, 0.5, 10.0) == PAUSE
    assert rungs.to_finish(1.0) is None, "waiting for peers at rung 1 is not leading: nobody is sent"
    assert rungs.on_result("mid", 1, 0.7, 10.0) == STOP  # 3 peers: fast goes on (promoted), the others stop
    assert rungs.promoted == {"fast"} and rungs.rejected == {"slow"}
    assert rungs.on_result("x", 1, 0.95, 10.0) == CONTINUE
    assert rungs.on_result("x", 2, 0.95, 10.0) == PAUSE  # top rung (2): waits there
    assert rungs.on_result("y", 1, 0.99) == CONTINUE and rungs.on_result("y", 2, 0.99) == PAUSE
    assert rungs.to_finish(1.0) is None, "y leads the top rung but has no epoch times to plan with"
    rungs.forget("y")
    # x needs 6 epochs x 10 s + 10 s of slack = 70 s to reach max_t 8.
    assert rungs.to_finish(71.0) is None
    assert rungs.to_finish(70.0) == "x" and rungs.finishing == {"x"}
    assert rungs.to_finish(70.0) is None, "sent once"
    assert rungs.on_result("x", 4, 0.95, 10.0) == CONTINUE, "a trial sent to the end passes every rung"
    assert rungs.on_result("x", 8, 0.95, 10.0) == STOP


# -- rungs in seconds of training (unit_s) ---------------------------------------------------------------------------


def test_with_unit_s_a_cheap_trial_reaches_a_rung_after_as_much_training_time_as_a_dear_one() -> None:
    """20 s a rung unit: a 25 s epoch reaches rung 1 at its first epoch (its end is the nearest to 20 s), a 2 s
    epoch at its tenth; both are compared there, not after one epoch each."""
    rungs = FairRungs(1, 2, 12, min_peers=2, epsilon=0.0, unit_s=20.0)
    assert rungs.on_result("dear", 1, 0.60, 25.0) == PAUSE, "rung 1 reached: waits for a peer"
    for epoch in range(1, 10):
        assert rungs.on_result("cheap", epoch, 0.40, 2.0) == CONTINUE, f"epoch {epoch} is {2 * epoch} s < 20 s"
    assert rungs.results == {1: {"dear": 0.60}}
    assert rungs.on_result("cheap", 10, 0.70, 2.0) == CONTINUE, "20 s: rung 1, and it beats the dear trial there"
    assert rungs.results[1] == {"dear": 0.60, "cheap": 0.70} and "dear" in rungs.rejected


def test_with_unit_s_the_nearest_epoch_end_reaches_the_rung_and_a_long_epoch_can_pass_two() -> None:
    rungs = FairRungs(1, 2, 12, min_peers=1, epsilon=0.0, unit_s=20.0, start_max_t=4)
    assert rungs.on_result("a", 1, 0.5, 9.0) == CONTINUE, "9 s: 20 s is nearer the next epoch end"
    assert rungs.on_result("a", 2, 0.6, 9.0) == CONTINUE and rungs.results == {1: {"a": 0.6}}, "18 s: rung 1"
    assert rungs.on_result("b", 1, 0.7, 50.0) == CONTINUE, "one 50 s epoch passes rungs 1 and 2 (20 s, 40 s)"
    assert rungs.results[1]["b"] == rungs.results[2]["b"] == 0.7 and 4 not in rungs.results


def test_with_unit_s_a_trial_that_finishes_before_a_rung_is_a_peer_there_with_its_final_value() -> None:
    """A small CNN trains all its epochs in less than a rung's time: its final value counts at every rung above,
    and the dear trial waiting there for peers is decided by it."""
    rungs = FairRungs(1, 4, 12, min_peers=2, epsilon=0.0, unit_s=30.0)
    assert rungs.on_result("resnet", 1, 0.65, 30.0) == PAUSE
    for epoch in range(1, 12):
        assert rungs.on_result("tiny", epoch, 0.33 if epoch < 4 else 0.7, 1.5) == CONTINUE
    assert rungs.on_result("tiny", 12, 0.78, 1.5) == STOP, "max_t is in epochs: it is done"
    assert rungs.results[1]["tiny"] == rungs.results[4]["tiny"] == rungs.results[12]["tiny"] == 0.78
    assert "resnet" in rungs.rejected, "2 results at rung 1 keep 1 of 2: the finished small CNN's"


def test_with_unit_s_the_deadline_plans_with_the_leaders_epochs_left_not_its_rung() -> None:
    rungs = FairRungs(1, 4, 12, min_peers=1, epsilon=0.0, unit_s=10.0)
    for epoch in range(1, 5):
        rungs.on_result("x", epoch, 0.8, 10.0)
    assert rungs.paused == {"x": 4}, "rung 4 (40 s), the top rung: waits there"
    assert rungs.on_result("y", 1, 0.9, 40.0) == PAUSE and rungs.paused["y"] == 4, "y leads the top rung"
    # y has 11 epochs of 40 s left: 440 s + one epoch of slack.
    assert rungs.to_finish(481.0) is None and rungs.to_finish(480.0) == "y"


def test_with_unit_s_a_slow_first_epoch_that_lands_on_the_top_rung_has_won_nothing_and_is_not_sent() -> None:
    """A real run on a slow day (2026-12-07): resnet18 at 67 s an epoch, 22.5 s rung units, 4 peers a rung. Its first
    epoch took it past rung 1 (two results there, no decision) to the top rung, and with 380 s left it needed 737 s
    to finish, so both resnet18 recipes were sent to the end and held both workers for the whole budget while new
    trials waited. It has won no rung, and it could not finish anyway: neither is sent."""
    rungs = FairRungs(1, 4, 12, min_peers=4, epsilon=0.0, unit_s=22.5)
    for epoch in range(1, 8):
        decision = rungs.on_result("tinyvgg", epoch, 0.70, 3.0)
    assert decision == PAUSE and rungs.paused == {"tinyvgg": 1}
    for trial in ("resnet_a", "resnet_b"):
        assert rungs.on_result(trial, 1, 0.73, 67.0) == PAUSE and rungs.paused[trial] == 4 == rungs.top
    assert rungs.to_finish(380.0) is None
    assert rungs.to_finish(67.0 * 11) is None, "in time to finish, but it won nothing"


def test_a_leader_that_cannot_reach_max_t_in_the_time_left_is_passed_over_for_one_that_can() -> None:
    rungs = FairRungs(1, 2, 12, min_peers=4, epsilon=0.0)
    for trial, value, seconds in (("slow", 0.90, 60.0), ("other", 0.10, 5.0), ("another", 0.20, 5.0)):
        assert rungs.on_result(trial, 1, value, seconds) == PAUSE
    assert rungs.on_result("quick", 1, 0.80, 5.0) == CONTINUE
    assert rungs.won == {"slow", "quick"}, "the top half of four at rung 1"
    rungs.on_result("slow", 2, 0.90, 60.0)
    rungs.on_result("quick", 2, 0.80, 5.0)
    assert rungs.paused == {"slow": 2, "quick": 2}, "both wait at the top"
    # slow needs 10 x 60 s = 600 s; with 100 s left it cannot get within an epoch of max_t. quick needs 50 s.
    assert rungs.to_finish(100.0) is None, "quick's time has not come yet (50 s + one epoch of slack)"
    assert rungs.to_finish(55.0) == "quick"
    assert rungs.to_finish(661.0) is None, "slow's time (600 s + one epoch) has not come yet"
    assert rungs.to_finish(650.0) == "slow"


def test_the_fair_scheduler_times_rungs_by_the_epochs_own_seconds() -> None:
    """``epoch_seconds`` (train + validate, what a resumed trial's catch-up reports carry) over Tune's time between
    reports, which includes a restore."""
    scheduler, controller = _scheduler(reduction_factor=2, min_peers=1, unit_s=20.0)
    trial = _trial(controller, scheduler, "t")
    result = {"training_iteration": 1, "val_auroc": 0.7, "epoch_seconds": 5.0, "time_this_iter_s": 25.0}
    assert scheduler.on_trial_result(controller, trial, result) == CONTINUE, "5 s of training: not at 20 s yet"
    assert scheduler.rungs.results == {}
