"""``build_tuner``: the searcher (Optuna TPE, recipes first), the scheduler (ASHA, fair rungs or FIFO) and the Ray Tune
``Tuner``.

The values every trial shares (``epochs``, ``seed``) go in Tune's ``param_space``: its search generator merges those
constants into each config the searcher suggests, so the space stays a plain ``(trial) -> dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runstore.layout import STUDY_FILE
from runstore.metrics import metric_mode
from search.settings import ResolvedSearch

__all__ = ["build_tuner", "make_scheduler", "make_searcher", "run_config", "searcher_concurrency"]


# A trial worker process outlives its trial and takes the next one (Tune resets the function trainable): no new
# process, torch import or copy of the image arrays per trial. A trial's state lives in its checkpoint, never in
# the process.
REUSE_ACTORS = True


def make_scheduler(r: ResolvedSearch) -> tuple[Any, str | None, str | None]:
    """The trial scheduler and the metric/mode the Tuner itself gets.

    ASHA and fair rungs compare trials on the rung metric and have their own metric, so the Tuner gets none (Tune
    refuses a second one); FIFO stops nothing and the Tuner gets ``--metric`` (its best result). TPE optimises
    ``--metric`` either way.
    """
    from ray.tune.schedulers import FIFOScheduler

    from search.schedulers import FairRungScheduler, ResumableASHA

    if r.scheduler == "asha":
        asha = ResumableASHA(
            time_attr="training_iteration",
            metric=r.rung_metric,
            mode=metric_mode(r.rung_metric),
            max_t=r.max_epochs,
            grace_period=r.grace_period,
            reduction_factor=r.reduction_factor,
        )
        return asha, None, None
    if r.scheduler == "fair":
        fair = FairRungScheduler(
            metric=r.rung_metric,
            mode=metric_mode(r.rung_metric),
            grace_period=r.grace_period,
            reduction_factor=r.reduction_factor,
            max_t=r.max_epochs,
            max_concurrent=r.max_concurrent,
            time_budget_s=r.time_budget_s,
            unit_s=r.rung_unit_s,
        )
        return fair, None, None
    return FIFOScheduler(), r.metric, r.mode


def searcher_concurrency(r: ResolvedSearch) -> int:
    """How many trials the searcher may have open at once. Fair rungs pause trials that wait for peers, and a paused
    trial still counts as open: without room for ``reduction_factor`` of them no new trial could come to fill their
    rung, and the paused ones would be resumed unfairly early. So those get ``max_concurrent + reduction_factor``;
    the others ``max_concurrent``."""
    return r.max_concurrent + (r.reduction_factor if r.scheduler == "fair" else 0)


def make_searcher(r: ResolvedSearch, space: Any, recipes: list[dict[str, Any]], run_dir: Path) -> Any:
    """Optuna's seeded TPE over the define-by-run ``space`` with a share of local moves around the best trial
    (``search.samplers``), the recipes queued first, the study in ``run_dir``;
    early-stopped trials are PRUNED and finished ones valued at their best epoch, and on the ``cpu`` profile proposals
    dearer than a fair share of the budget per epoch are skipped (``search.searcher``)."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from search.samplers import LocalSearchSampler
    from search.searcher import RankedOptunaSearch

    startup = r.startup_trials(len(recipes))
    tpe = optuna.samplers.TPESampler(seed=r.seed, n_startup_trials=startup)
    searcher = RankedOptunaSearch(
        space=space,
        metric=r.metric,
        mode=r.mode,
        sampler=LocalSearchSampler(tpe, share=r.local_share, n_startup_trials=startup, seed=r.seed),
        study_name=r.name,
        storage=optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}"),
        points_to_evaluate=list(recipes) or None,
        max_epochs=r.max_epochs,
        max_epoch_s=r.epoch_share_s,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=searcher_concurrency(r))


def build_tuner(
    r: ResolvedSearch,
    trainable: Any,
    space: Any,
    recipes: list[dict[str, Any]],
    run_dir: Path,
    storage_path: str,
    callbacks: list[Any] | None = None,
) -> Any:
    """A new ``Tuner`` for the resolved search: searcher, scheduler, one checkpoint kept per trial, one retry."""
    from ray.tune import TuneConfig, Tuner

    scheduler, metric, mode = make_scheduler(r)
    return Tuner(
        trainable,
        param_space=r.fixed,
        tune_config=TuneConfig(
            search_alg=make_searcher(r, space, recipes, run_dir),
            scheduler=scheduler,
            metric=metric,
            mode=mode,
            num_samples=-1 if r.trial_limit is None else r.trial_limit,  # -1: until the time budget ends
            time_budget_s=r.time_budget_s,
            reuse_actors=REUSE_ACTORS,
        ),
        run_config=run_config(r.name, storage_path, callbacks),
    )


def run_config(name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:
    """Tune's ``RunConfig`` of a search or a study: the experiment ``name`` under ``storage_path``, the last checkpoint
    kept per trial (what ``--resume`` continues from), one retry of a trial whose worker failed, and ``callbacks``
    followed by :class:`search.interrupt_guard.EpochSafeInterrupt` (Ctrl+C stops the run between epochs only)."""
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig

    from search.interrupt_guard import EpochSafeInterrupt

    return RunConfig(
        name=name,
        storage_path=storage_path,
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        failure_config=FailureConfig(max_failures=1),
        callbacks=[*(callbacks or []), EpochSafeInterrupt()],
        verbose=1,
    )
