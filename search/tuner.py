"""``build_tuner``: the searcher (Optuna TPE, recipes first), the scheduler (ASHA or FIFO) and the Ray Tune ``Tuner``.

The values every trial shares (``epochs``, ``seed``) go in Tune's ``param_space``: its search generator merges those
constants into each config the searcher suggests, so the space stays a plain ``(trial) -> dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runstore.layout import STUDY_FILE
from runstore.metrics import metric_mode
from search.settings import ResolvedSearch

__all__ = ["build_tuner", "make_scheduler", "make_searcher", "run_config"]


def make_scheduler(r: ResolvedSearch) -> tuple[Any, str | None, str | None]:
    """The trial scheduler and the metric/mode the Tuner itself gets.

    ASHA compares trials on the rung metric and has its own metric, so the Tuner gets none (Tune refuses a second
    one); FIFO stops nothing and the Tuner gets ``--metric`` (its best result). TPE optimises ``--metric`` either way.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if r.scheduler == "asha":
        asha = ASHAScheduler(
            time_attr="training_iteration",
            metric=r.rung_metric,
            mode=metric_mode(r.rung_metric),
            max_t=r.max_epochs,
            grace_period=r.grace_period,
            reduction_factor=r.reduction_factor,
        )
        return asha, None, None
    return FIFOScheduler(), r.metric, r.mode


def make_searcher(r: ResolvedSearch, space: Any, recipes: list[dict[str, Any]], run_dir: Path) -> Any:
    """Optuna's seeded TPE over the define-by-run ``space``, the recipes queued first, the study in ``run_dir``;
    early-stopped trials are PRUNED and finished ones valued at their best epoch (``search.searcher``)."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from search.searcher import RankedOptunaSearch

    searcher = RankedOptunaSearch(
        space=space,
        metric=r.metric,
        mode=r.mode,
        sampler=optuna.samplers.TPESampler(seed=r.seed, n_startup_trials=r.startup_trials(len(recipes))),
        study_name=r.name,
        storage=optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}"),
        points_to_evaluate=list(recipes) or None,
        max_epochs=r.max_epochs,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=r.max_concurrent)


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
            num_samples=r.num_samples,
            time_budget_s=r.time_budget_s,
            reuse_actors=False,
        ),
        run_config=run_config(r.name, storage_path, callbacks),
    )


def run_config(name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:
    """Tune's ``RunConfig`` of a search or a study: the experiment ``name`` under ``storage_path``, the last checkpoint
    kept per trial (what ``--resume`` continues from), one retry of a trial whose worker failed."""
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=name,
        storage_path=storage_path,
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        failure_config=FailureConfig(max_failures=1),
        callbacks=callbacks,
        verbose=1,
    )
