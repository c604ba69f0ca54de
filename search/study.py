"""``python -m search.study batch-size | augmentation``: an effect study, run by Ray Tune like a search.

A study varies one factor on a grid (:mod:`search.studies`), holds everything else at a base config (a seed recipe
scaled to the profile as the search scales it, or ``--base best_config.json``), repeats each level over ``--seeds``
seeds and trains every trial the same ``--epochs`` under a FIFO scheduler: no trial is stopped early, since stopping
would confound the answer. Ray Tune runs the grid (level x seed), so a study uses every CPU/GPU and a cluster
(``--address auto``) as a search does, and ``--resume RUN_DIR`` continues an interrupted one, or one stopped because
its run folder took no more writes (one ``error:`` line, as a search: :func:`search.driver.storage_faults_stop`).
The run directory has a search's layout (:mod:`runstore.layout`): ``run.json`` with ``"kind": "study"`` and the
study's definition, ``trials.csv`` with ``config/<factor>`` and ``config/seed`` columns, ``search.log`` and
``report/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from runstore.errors import UserError, cli
from runstore.layout import load_run_info, write_run_info
from runstore.metrics import DEFAULT_METRIC, EPOCH_SECONDS
from runstore.trials import load_trials, write_trials_csv
from runstore.trust import new_run_id, trust_run
from search.driver import (
    RunInterrupted,
    check_cluster_resources,
    check_saved_settings,
    fit_interrupted,
    mark_finished,
    record_failed_trials,
    report_and_push,
    resumable_until_finished,
    resume_settings,
    run_or_interrupted,
    run_place,
    storage_faults_stop,
)
from search.driver import start_ray as _start_ray
from search.settings import validate_run_flags
from search.storage import pull_trial_files, push_run_files
from search.studies import get_study, parse_levels, parse_lr_rules

__all__ = ["METRIC", "StudySettings", "main", "run_study", "validate"]

log = logging.getLogger("search.study")

#: What a study compares levels on (maximised), as a search does by default.
METRIC = DEFAULT_METRIC
#: The patient-level validation split every study uses: fixed, whatever the trial seeds.
VAL_FRACTION, SPLIT_SEED = 0.2, 0
MAX_SEEDS = 100


@dataclasses.dataclass
class StudySettings:
    """The flags of a study as given (``None``: the default); saved in run.json so ``--resume`` needs none repeated."""

    study: str
    base: str | None = None
    recipe: str | None = None
    levels: str | None = None
    lr_rule: str | None = None
    seeds: int = 3
    epochs: int | None = None
    data: str | None = None
    task: str | None = None
    storage: str = "runs"
    name: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    profile: str | None = None
    weights: str = "auto"
    report: bool = True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.study",
        description="An effect study: one factor on a grid, everything else held at a base config, every level "
        "repeated over seeds and trained the same number of epochs (Ray Tune grid search, no early stopping).",
    )
    p.add_argument("study", nargs="?", help="batch-size or augmentation")
    p.add_argument("--base", help="a best_config.json (search.export) to hold everything else at")
    p.add_argument(
        "--recipe",
        help="a seed recipe to hold everything else at, scaled to the profile (default: the recipe of the seed "
        "project that asked: seed_alexnet_gray for batch-size, seed_tinyvgg for augmentation)",
    )
    p.add_argument(
        "--levels",
        help="the levels, comma-separated: batch sizes from 1 to 300 (default 1,8,35,128,300) or augmentation "
        "levels (none, seed, all, or one op: hflip, vflip, rotate, brightness, contrast, trivial_augment, crop_scale)",
    )
    p.add_argument(
        "--lr-rule",
        help="batch-size only: learning-rate rules as a second factor, e.g. fixed,linear,sqrt (linear: lr*b/b0, "
        "sqrt: lr*sqrt(b/b0), b0 the base's batch size; default: the base's rate at every batch size)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per level (default 3): init, augmentation, batch order")
    p.add_argument("--epochs", type=int, help="epochs of every trial (CPU: batch-size 6, augmentation 20)")
    p.add_argument("--data", help="data folder: Kaggle chest_xray layout or class folders (default: bundled demo set)")
    p.add_argument("--task", help="pneumonia3class (default, or the --base config's task), pneumonia2class, folders")
    p.add_argument("--storage", default="runs", help="where runs go: a directory or a URI Ray Tune accepts (s3://...)")
    p.add_argument("--name", help="run name (default: <study>-<UTC timestamp>)")
    p.add_argument("--address", help="join a running Ray cluster, e.g. auto")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, help="fractional GPUs per trial, e.g. 0.25 (default: 1 on GPU)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: as many as resources fit)")
    p.add_argument("--profile", choices=["cpu", "gpu"], help="base and default sizes (default: gpu if the cluster has)")
    p.add_argument(
        "--weights",
        default="auto",
        help="ImageNet weights of a pretrained base: auto (cache, else download once), local (cache only), none",
    )
    p.add_argument("--no-report", dest="report", action="store_false", help="do not build the HTML report at the end")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted study; its saved flags are reused")
    p.add_argument("-v", "--verbose", action="store_true", help="Ray Tune's full console output")
    p.add_argument(
        "--trust-run",
        action="store_true",
        help="resume a run this machine did not create (resuming unpickles its Tune state, which can run code)",
    )
    return p


def validate(s: StudySettings) -> dict[str, Any] | None:
    """``UserError`` naming the flag for anything wrong, before Ray starts; returns the ``--base`` document."""
    from search.export import load_best_config
    from spaces.recipes import RECIPES
    from trainables.index import TASKS

    study = get_study(s.study)
    parse_levels(study, s.levels, "cpu")
    parse_lr_rules(study, s.lr_rule)
    if not 1 <= s.seeds <= MAX_SEEDS:
        raise UserError(f"--seeds must be from 1 to {MAX_SEEDS}, got {s.seeds}")
    if s.epochs is not None and s.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {s.epochs}")
    if s.base is not None and s.recipe is not None:
        raise UserError("--base and --recipe both name the base config; give one")
    if s.recipe is not None and s.recipe not in RECIPES:
        raise UserError(f"--recipe: unknown recipe {s.recipe!r}; valid recipes: {', '.join(RECIPES)}")
    if s.task is not None and s.task not in TASKS:
        raise UserError(f"--task: unknown task {s.task!r}; valid tasks: {', '.join(TASKS)}")
    validate_run_flags(s)
    if s.base is None:
        return None
    doc = load_best_config(s.base)
    try:
        _trial_config(doc["config"])
    except ValueError as exc:
        raise UserError(f"--base {s.base}: {exc}") from None
    return doc


def _trial_config(config: dict[str, Any]) -> Any:
    from trainables.config import TrialConfig

    return TrialConfig.from_dict(config)


def _base_config(s: StudySettings, doc: dict[str, Any] | None, profile: str) -> tuple[dict[str, Any], str, list[Any]]:
    """The base config on ``profile`` (epochs and seed still unset), where it came from, and its weights records.

    A recipe is scaled as the search scales it (``spaces.recipes.recipes_for``) and then by the study's own changes
    on that profile, logged; a ``--base`` config runs as written (as ``search.retrain`` does: a pretrained base
    without its weights is an error, unless ``--weights none`` trains it from scratch).
    """
    from search.retrain import member_weights
    from spaces.recipes import RECIPES, recipes_for
    from trainables.weights import ensure_weights

    study = get_study(s.study)
    if doc is not None:
        configs, records = member_weights([_trial_config(doc["config"])], s.weights)
        return configs[0].to_dict(), str(s.base), records
    name = s.recipe or study.recipe
    seed = RECIPES[name]
    records = ensure_weights([seed["model"]] if seed["pretrained"] else [], s.weights)
    available = frozenset(r.model for r in records if r.source != "none")
    recipe = next(r for r in recipes_for(profile, pretrained_available=available) if r.name == name)
    for note in recipe.notes:
        log.info("recipe %s", note)
    config = dict(recipe.config)
    changes = study.adaptations.get(profile) if s.recipe is None else None
    if changes is not None:
        config.update(changes[0])
        config["recipe"] = f"{config['recipe']}+{study.name}"
        log.info("study %s on %s: %s", study.name, profile, changes[1])
    return config, f"recipe:{name}", records


def run_study(settings: StudySettings, resume_dir: Path | None = None, verbose: bool = False) -> Path:
    """Run (or resume) a study and return its run directory; its full output goes to ``RUN/search.log``."""
    from search.console import LOG_FILE, console_for
    from trainables.data import DataCatalog

    s = settings
    doc = validate(s)
    task = s.task or (str(doc["task"]) if doc is not None else "pneumonia3class")
    # Index and split first: a wrong data folder fails here, before a Ray cluster is started or joined.
    catalog = DataCatalog(s.data, task, val_fraction=VAL_FRACTION, split_seed=SPLIT_SEED)
    started = datetime.now(timezone.utc)
    place = run_place(s.storage, s.name or f"{s.study}-{started.strftime('%Y%m%d-%H%M%S')}", resume_dir)
    with console_for(place.run_dir / LOG_FILE, verbose=verbose) as console:
        if not verbose:
            console.line(f"study {s.study} -> {place.uri or place.run_dir}  (full log: {place.run_dir / LOG_FILE})")
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        started_ray = _start_ray(s.address)
        try:
            with storage_faults_stop(place.uri or place.run_dir, "search.study", "study"):
                return _study_on_ray(s, doc, task, catalog, place, started, resume_dir, console)
        finally:
            if started_ray:
                import ray

                ray.shutdown()


def _study_on_ray(
    s: StudySettings,
    doc: dict[str, Any] | None,
    task: str,
    catalog: Any,
    place: Any,
    started: datetime,
    resume_dir: Path | None,
    console: Any,
) -> Path:
    """Resolve the study on the cluster, decode the base image spec once, build the grid and the Tuner, fit, finish."""
    import ray
    from ray import tune

    from search import fault_guard
    from search.console import ProgressCallback
    from search.studies import study_trial, trial_configs
    from trainables.spec_store import start_spec_store
    from trainables.weights import ensure_weights, summary

    run_dir = place.run_dir
    cluster = ray.cluster_resources()
    profile = s.profile or ("gpu" if float(cluster.get("GPU", 0)) > 0 else "cpu")
    gpus = s.gpus_per_trial if s.gpus_per_trial is not None else (1.0 if profile == "gpu" else 0.0)
    check_cluster_resources(s.address, s.cpus_per_trial, gpus)
    study = get_study(s.study)
    if resume_dir is None:
        base, source, weights = _base_config(s, doc, profile)
        levels, lr_rules = parse_levels(study, s.levels, profile), parse_lr_rules(study, s.lr_rule)
        epochs = s.epochs or study.epochs[profile]
        base = {**base, "epochs": epochs, "seed": 0}
        _trial_config(base)  # a base the study cannot train fails here, not in every trial
    else:
        plan = load_run_info(run_dir)["study"]
        base, levels, lr_rules = plan["base"], plan["levels"][study.factor], plan["levels"].get("lr_rule")
        weights = ensure_weights([base["model"]] if base.get("pretrained") else [], s.weights)
    console.line(summary(weights, s.weights))

    t0 = time.perf_counter()
    spec = _trial_config(base).image_spec
    store = start_spec_store(catalog)
    counts = store.summary(spec)  # the base spec: every trial of the study but a resolution level's trains on it
    description = catalog.describe()
    log.info(
        "data %s: %d train / %d validation images at %s, decoded in %.1fs",
        description["root"],
        counts["train"],
        counts["val"],
        spec.label(),
        time.perf_counter() - t0,
    )
    seeds = list(range(s.seeds))
    n_trials = len(levels) * len(seeds) * len(lr_rules or [None])
    max_concurrent = s.max_concurrent or max(1, int(float(cluster.get("CPU", 1)) // s.cpus_per_trial))
    resources = {"cpu": s.cpus_per_trial, "gpu": gpus}
    name = run_dir.name
    if resume_dir is None:
        factors = [study.factor] + (["lr_rule"] if lr_rules is not None else [])
        run_id = new_run_id()
        info = _run_info(s, name, profile, task, description, started, run_id, n_trials)
        info["study"] = {
            "name": study.name,
            "factors": factors,
            "levels": {study.factor: levels, **({"lr_rule": lr_rules} if lr_rules is not None else {})},
            "seeds": seeds,
            "epochs": base["epochs"],
            "base": base,
            "base_source": source,
            "classes": list(catalog.classes),
            "train_images": counts["train"],
            "claim": study.claim,
        }
        info["max_epochs"] = base["epochs"]
        info["weights"] = {"policy": s.weights, "models": [dataclasses.asdict(w) for w in weights]}
        info["resources"] = {**resources, "max_concurrent": max_concurrent}
        write_run_info(run_dir, info)
        # Before Tune writes any state: a run created here resumes without --trust-run, even after a SIGKILL.
        trust_run(place.uri or str(run_dir), run_id)

    trainable = tune.with_resources(tune.with_parameters(study_trial, data=store.source), resources)
    if resume_dir is not None:
        from ray.tune import Tuner

        experiment = place.uri or str(resume_dir)
        tuner = Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = _build_tuner(
            trainable,
            trial_configs(study, base, levels, seeds, lr_rules),
            name,
            place.storage_path,
            max_concurrent,
            [ProgressCallback(n_trials, METRIC, "max", None), fault_guard.StorageGuard()],
        )
    line = (
        f"study {study.name}: {n_trials} trials ({len(levels)} levels x {len(seeds)} seeds"
        f"{f' x {len(lr_rules)} lr rules' if lr_rules else ''}), {base['epochs']} epochs each, FIFO (no early "
        f"stopping), {resources} per trial, up to {max_concurrent} at once"
    )
    log.info("%s -> %s", line, run_dir)
    console.line(line)
    if place.uri is not None:
        push_run_files(run_dir, place.uri, ("run.json",))
    hint = f"study interrupted; continue it with: python -m search.study --resume {place.uri or run_dir}"
    with resumable_until_finished(run_dir, hint):
        try:
            interrupted, grid = fit_interrupted(tuner, place.uri or run_dir, "search.study", "study")
        finally:
            store.close()
        record_failed_trials(run_dir, grid)
        if interrupted:
            if place.uri is not None:
                pull_trial_files(place.uri, run_dir)
            write_trials_csv(run_dir)
            if place.uri is not None:
                push_run_files(run_dir, place.uri)
            raise RunInterrupted(hint)
        return _finish(run_dir, report=s.report, uri=place.uri, out=console.line)


def _run_info(
    s: StudySettings,
    name: str,
    profile: str,
    task: str,
    description: dict[str, Any],
    started: datetime,
    run_id: str,
    n_trials: int,
) -> dict[str, Any]:
    """The run.json fields a search also writes that apply to a study (``study`` is added beside them)."""
    from search.export import provenance

    return {
        "kind": "study",
        "name": name,
        "task": task,
        "profile": profile,
        "metric": METRIC,
        "mode": "max",
        "scheduler": "fifo",
        "num_samples": n_trials,
        "storage": s.storage,
        "settings": dataclasses.asdict(s),
        "data": {**description, "val_fraction": VAL_FRACTION, "split_seed": SPLIT_SEED},
        "run_id": run_id,
        "started": started.isoformat(),
        "finished": False,
        "provenance": provenance(),
    }


def _build_tuner(
    trainable: Any,
    configs: list[dict[str, Any]],
    name: str,
    storage_path: str,
    max_concurrent: int,
    callbacks: list[Any],
) -> Any:
    """A ``Tuner`` that runs each of ``configs`` once, in order: FIFO (nothing stopped early), ``max_concurrent`` at
    once. The grid is listed, not Tune's ``grid_search`` with ``sample_from`` for the fields a level sets: a trial
    still pending when a study is interrupted would resume with those fields unresolved. The generator itself holds
    ``max_concurrent``: Tune ignores ``TuneConfig.max_concurrent_trials`` with a ``BasicVariantGenerator`` (it says
    so in the log), and the trials would all start at once."""
    from ray.tune import TuneConfig, Tuner
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from search.tuner import REUSE_ACTORS, run_config

    return Tuner(
        trainable,
        param_space=configs[0],  # each point overrides keys of the space, so the space must hold every key
        tune_config=TuneConfig(
            search_alg=BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=max_concurrent),
            scheduler=FIFOScheduler(),
            metric=METRIC,
            mode="max",
            num_samples=len(configs),
            reuse_actors=REUSE_ACTORS,
        ),
        run_config=run_config(name, storage_path, callbacks),
    )


def level_summary(trials: pd.DataFrame, factors: list[str], metric: str = METRIC) -> pd.DataFrame:
    """Per level (x rule): trials, epochs, the mean and range over seeds of the final and the best ``metric``, the
    mean seconds an epoch. The console's table; the report has the intervals."""
    cols = [f"config/{f}" for f in factors]
    if trials.empty or metric not in trials.columns or not all(c in trials.columns for c in cols):
        return pd.DataFrame()
    scored = trials.dropna(subset=[metric])
    last = scored.groupby("trial_id", sort=False).tail(1)  # rows are in epoch order; trials in the grid's order
    best = scored.groupby("trial_id")[metric].max().rename("best")
    per_trial = last.set_index("trial_id")[[*cols, metric, "epoch", EPOCH_SECONDS]].join(best)
    table = per_trial.groupby(cols, sort=False).agg(
        trials=(metric, "size"),
        epochs=("epoch", "min"),
        final_mean=(metric, "mean"),
        final_min=(metric, "min"),
        final_max=(metric, "max"),
        best_mean=("best", "mean"),
        epoch_s=(EPOCH_SECONDS, "mean"),
    )
    return table.reset_index()


def _finish(run_dir: Path, report: bool = True, uri: str | None = None, out: Callable[[str], None] = print) -> Path:
    """Write trials.csv and the report; show the per-level table and the paths with ``out``."""
    trials_csv = mark_finished(run_dir, uri)
    info = load_run_info(run_dir)
    table = level_summary(load_trials(run_dir), info["study"]["factors"])
    out("")
    out(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") if not table.empty else "no trial scored")
    out("")
    out(f"trials:       {trials_csv}")
    report_and_push(run_dir, report, uri, out)
    return run_dir


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    if args.resume:
        run_dir, settings = resume_settings(
            args.resume, args.trust_run, args.address, _settings_from_run_info, "reports.build"
        )
        return run_or_interrupted(lambda: run_study(settings, resume_dir=run_dir, verbose=args.verbose), METRIC)
    if not args.study:
        raise UserError("a study is required: batch-size or augmentation (e.g. python -m search.study batch-size)")
    fields = {f.name for f in dataclasses.fields(StudySettings)}
    settings = StudySettings(**{k: v for k, v in vars(args).items() if k in fields})
    return run_or_interrupted(lambda: run_study(settings, verbose=args.verbose), METRIC)


def _settings_from_run_info(info: dict[str, Any], run_dir: Path, address: str | None = None) -> StudySettings:
    """The saved flags of a study's run.json, checked as the flags are: a hand-edited file is an error naming the
    key. The base, levels and seeds come from the saved study (a ``--base`` file may have moved since)."""
    where = run_dir / "run.json"
    saved, name, plan = info.get("settings"), info.get("name"), info.get("study")
    if info.get("kind") != "study":
        raise UserError(f"{where}: not a study (kind {info.get('kind', 'search')!r}); resume it with search.run")
    if not isinstance(saved, dict) or not isinstance(name, str) or not isinstance(plan, dict):
        raise UserError(f'{where}: no "settings", "study" or "name"; expected a run.json written by search.study')
    check_saved_settings(saved, where, StudySettings)
    if "study" not in saved:
        raise UserError(f"{where}: settings has no study; expected a run.json written by search.study")
    if not isinstance(plan.get("base"), dict) or not isinstance(plan.get("levels"), dict):
        raise UserError(f"{where}: study has no base config or levels; expected a run.json written by search.study")
    settings = StudySettings(**{**saved, "base": None})
    settings.name = name
    settings.task = settings.task or (info["task"] if isinstance(info.get("task"), str) else None)
    settings.address = address or settings.address
    try:
        validate(settings)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return settings


if __name__ == "__main__":
    sys.exit(main())
