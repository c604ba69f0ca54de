"""``python -m search.run --space pneumonia3class``: the hyperparameter search, end to end (CLI and orchestration).

The flags resolve to a search on this hardware (:mod:`search.settings`), :mod:`search.tuner` builds Ray Tune's
``Tuner`` (Optuna TPE proposing, ASHA stopping, the seed recipes first), the data set is indexed and split here,
checked before any trial starts, and each image spec is decoded when a trial first asks for it
(:mod:`trainables.spec_store`). The console shows a status line (:mod:`search.console`); the run ends
with ``trials.csv``, ``best_config.json``, the report and a leaderboard. ``--resume RUN_DIR`` continues an
interrupted run with every finished trial kept.
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
from typing import TYPE_CHECKING, Any

import pandas as pd

from runstore.errors import UserError, cli
from runstore.layout import BEST_FILE, STUDY_FILE, write_run_info
from runstore.metrics import DEFAULT_METRIC, METRICS
from runstore.ranking import leaderboard, rank_trials
from runstore.trials import load_trials, write_trials_csv
from runstore.trust import new_run_id, trust_run
from search.driver import RunInterrupted as SearchInterrupted
from search.driver import check_cluster_resources as _check_cluster_resources
from search.driver import (
    check_saved_settings,
    mark_finished,
    record_failed_trials,
    report_and_push,
    resumable_until_finished,
    resume_settings,
    run_or_interrupted,
    run_place,
    storage_faults_stop,
)
from search.driver import fit_interrupted as _fit_interrupted
from search.driver import start_ray as _start_ray
from search.settings import (
    SCHEDULERS,
    SearchSettings,
    default_rung_metric,
    resolve,
    run_name,
    saved_settings,
    validate,
)
from search.storage import pull_trial_files, push_run_files

__all__ = ["METRICS", "SearchInterrupted", "SearchSettings", "default_rung_metric", "main", "run_search"]

if TYPE_CHECKING:
    from trainables.data import DecodeCheck
    from trainables.weights import WeightsRecord

log = logging.getLogger("search.run")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Hyperparameter search for chest X-ray classifiers (Ray Tune + Optuna TPE + ASHA).",
    )
    p.add_argument("--space", help="search space name (see spaces.list_spaces())")
    p.add_argument("--data", help="data folder: Kaggle chest_xray layout or class folders (default: bundled demo set)")
    p.add_argument(
        "--num-samples",
        type=int,
        help="trials to run at most (default: with a time budget, as many as it allows, as on the CPU; else 100)",
    )
    p.add_argument("--max-epochs", type=int, help="epochs a trial trains if never stopped (CPU 12, GPU 30)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped (CPU 1, GPU 2)")
    p.add_argument(
        "--reduction-factor", type=int, help="ASHA: keep 1/N of trials at each rung (default 4, as in Ray Tune)"
    )
    p.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help="validation metric to maximise (default val_balanced_acc: mean per-class recall, so the rare viral "
        "class counts as much as the common bacterial one); val_loss is minimised",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds Optuna's TPE sampler, every trial and the validation split"
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, help="fractional GPUs per trial, e.g. 0.25 (default: 1 on GPU)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: as many as resources fit)")
    p.add_argument("--storage", default="runs", help="where runs go: a directory or a URI Ray Tune accepts (s3://...)")
    p.add_argument("--name", help="run name (default: <space>-<UTC timestamp>)")
    p.add_argument("--address", help="join a running Ray cluster, e.g. auto")
    p.add_argument(
        "--time-budget",
        type=float,
        dest="time_budget_s",
        help="stop the search after N seconds (CPU default 450, 0 = none)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="patients carved out of train for validation")
    p.add_argument("--profile", choices=["cpu", "gpu"], help="space profile (default: gpu if the cluster has GPUs)")
    p.add_argument("--no-recipes", dest="recipes", action="store_false", help="do not queue the seed recipes first")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not build the HTML report at the end")
    p.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="asha",
        help="asha stops weak trials at epoch rungs (default); fair pauses a trial at a rung until enough peers have "
        "a result there and grows the top rung only while the ranking changes (search.schedulers); fifo trains every "
        "trial to --max-epochs",
    )
    p.add_argument(
        "--rung-metric",
        help="what ASHA compares trials on at its rungs (default val_auroc, or val_loss when --metric is val_loss: "
        "after one epoch AUROC already ranks trials whose argmax still answers the majority class); TPE and the "
        "best trial still go by --metric",
    )
    p.add_argument(
        "--rung-seconds",
        type=float,
        help="fair: rungs in seconds of a trial's own training instead of epochs, so trials are compared after equal "
        "compute (cpu default: 1/40 of the budget x the trials at once, 22.5 s; 0 = epochs, the gpu default)",
    )
    p.add_argument(
        "--startup-trials", type=int, help="random trials before TPE takes over (default: recipes + 2, >= 5)"
    )
    p.add_argument(
        "--local-share",
        type=float,
        help="share of the proposals after the startup trials that are the best trial so far with one to three "
        "choices moved to a neighbouring value (local search, as SMAC and PBT's explore do); the rest are TPE's "
        "(default 0 = TPE only; 0.5 = every other proposal)",
    )
    p.add_argument(
        "--full-trainings",
        type=int,
        help="cpu profile with a time budget: propose only configs cheap enough (spaces/cost.py) that this many could "
        "each train all --max-epochs in the budget's worker-seconds (4: 18.75 s an epoch at 450 s on 2 CPUs; "
        "default 0 = only the per-trial share, budget x trials at once / --num-samples)",
    )
    p.add_argument(
        "--weights",
        default="auto",
        help="ImageNet weights of the pretrained backbones: auto (the torch hub cache, else download once before the "
        "trials start; without a network, the cache only), local (the cache only), none (every model from scratch)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run; its saved flags are reused")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="Ray Tune's full console output (default: a status line; the full log goes to RUN_DIR/search.log)",
    )
    p.add_argument(
        "--trust-run",
        action="store_true",
        help="resume a run this machine did not create (resuming unpickles its Tune state, which can run code: only "
        "for run folders you trust)",
    )
    return p


def _check_decoded(check: DecodeCheck, root: Path) -> None:
    """Refuse data that leaves a split empty once broken files are skipped: every trial would fail on it."""
    train, val = check.train, check.val
    if train and val:
        return
    if not train and not val and check.broken:
        names = ", ".join(Path(p).name for p in check.broken[:3])
        raise UserError(
            f"--data: no image under {root} could be read or decoded ({len(check.broken)} broken file(s), e.g. "
            f"{names}); expected JPEG or PNG chest X-rays"
        )
    raise UserError(
        f"--data: {root} leaves {train} training and {val} validation image(s) that decode "
        f"({len(check.broken)} broken file(s) skipped); a search needs both"
    )


def _leaderboard(trials: pd.DataFrame, metric: str, mode: str, top: int = 8) -> str:
    """Best trials and every seed recipe (runstore.ranking.leaderboard), one line each."""
    shown = leaderboard(rank_trials(trials, metric, mode), top)
    if shown.empty:
        return "no trial reported a result"
    cols = [
        ("rank", 4),
        ("trial", 10),
        ("recipe", 24),
        ("model", 15),
        ("batch", 5),
        ("size", 7),
        ("epochs", 6),
        ("status", 9),
        (metric, max(10, len(metric))),
        ("val_acc", 7),
        ("val_auroc", 9),
    ]
    lines = ["  ".join(name.ljust(w) for name, w in cols)]
    for _, row in shown.iterrows():

        def cell(key: str, r: pd.Series = row) -> str:
            v = r.get(key)
            if isinstance(v, float):
                return "" if pd.isna(v) else f"{v:.4f}"
            return "" if v is None else str(v)

        values = [
            str(row["rank"]),
            str(row["trial_id"]),
            cell("config/recipe") or "-",
            cell("config/model"),
            cell("config/batch_size"),
            cell("config/image_size"),
            f"{int(row.get('best_epoch', 0))}/{int(row.get('epochs_done', 0))}",
            str(row["status"]),
            cell(metric),
            cell("val_acc"),
            cell("val_auroc"),
        ]
        lines.append("  ".join(v[:w].ljust(w) for v, (_, w) in zip(values, cols)))
    return "\n".join(lines)


def run_search(settings: SearchSettings, resume_dir: Path | None = None, verbose: bool = False) -> Path:
    """Run (or resume) a search and return its run directory; its full output goes to ``RUN/search.log``."""
    from search.console import LOG_FILE, console_for
    from spaces import space_info
    from trainables.data import DataCatalog

    s = settings
    validate(s)
    info = space_info(s.space)
    # Index and split first: a wrong data folder fails here, before a Ray cluster is started or joined.
    catalog = DataCatalog(s.data, info.task, val_fraction=s.val_fraction, split_seed=s.seed)

    started = datetime.now(timezone.utc)
    place = run_place(s.storage, run_name(s, started), resume_dir)
    storage_path, uri, run_dir = place.storage_path, place.uri, place.run_dir
    with console_for(run_dir / LOG_FILE, verbose=verbose) as console:
        if not verbose:
            console.line(f"search {s.space} -> {uri or run_dir}  (full log: {run_dir / LOG_FILE})")
        # Tune warns on every checkpoint of short trials that snapshotting is frequent; it is, by design (every epoch).
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        started_ray = _start_ray(s.address)
        try:
            with storage_faults_stop(uri or run_dir, "search.run", "search"):
                return _search_on_ray(s, info.task, catalog, run_dir, storage_path, uri, started, resume_dir, console)
        finally:
            if started_ray:  # before the console is restored: Ray's last forwarded log lines belong in the log file
                import ray

                ray.shutdown()


def _search_on_ray(
    s: SearchSettings,
    task: str,
    catalog: Any,
    run_dir: Path,
    storage_path: str,
    uri: str | None,
    started: datetime,
    resume_dir: Path | None,
    console: Any,
) -> Path:
    """Resolve the settings on the cluster, check the data, build the Tuner, fit, finish."""
    import ray
    from ray import tune

    from search import fault_guard
    from search.console import ProgressCallback
    from search.export import provenance
    from search.tuner import build_tuner
    from spaces import get_space, image_specs, recipes_for
    from trainables.spec_store import start_spec_store
    from trainables.train import train_fn
    from trainables.weights import summary

    cluster = ray.cluster_resources()
    r = resolve(
        s, task=task, cluster_cpus=float(cluster.get("CPU", 1)), cluster_gpus=float(cluster.get("GPU", 0)), now=started
    )
    _check_cluster_resources(s.address, r.cpus_per_trial, r.gpus_per_trial)
    if r.profile == "cpu":
        log.info(
            "no GPU in the cluster: the %s space keeps to its CPU profile (small models and sizes that finish "
            "here); the full space runs with --profile gpu on GPUs",
            s.space,
        )

    # -- data: checked once here; each image spec decoded when a trial first asks for it, one object per spec -------
    t0 = time.perf_counter()
    specs = image_specs(s.space, r.profile)
    store = start_spec_store(catalog)
    check = store.check()
    if check.broken:
        catalog.warn_broken(check.broken)
    _check_decoded(check, catalog.root)
    description = catalog.describe()
    log.info(
        "data %s: %s train / %s validation images checked in %.1fs; %d image spec(s) declared, each decoded when a "
        "trial first asks for it",
        description["root"],
        sum(description["train_images"].values()),
        sum(description["val_images"].values()),
        time.perf_counter() - t0,
        len(specs),
    )

    weights = _pretrained_weights(r.profile, s.weights)
    console.line(summary(weights, s.weights))
    available = frozenset(w.model for w in weights if w.source != "none")
    space_fn = get_space(s.space, profile=r.profile, pretrained_available=available)
    log.info("%s", space_fn.describe())
    seed_recipes = recipes_for(r.profile, pretrained_available=available) if s.recipes else []
    for recipe in seed_recipes:
        for note in recipe.notes:
            log.info("recipe %s", note)
    recipes = [recipe.config for recipe in seed_recipes]

    if resume_dir is None:
        run_id = new_run_id()
        write_run_info(
            run_dir,
            {
                **r.run_info(),
                "kind": "search",
                "run_id": run_id,
                "data": description,
                "started": started.isoformat(),
                "finished": False,
                "recipes": [c.get("recipe") for c in recipes],
                "weights": {"policy": s.weights, "models": [dataclasses.asdict(w) for w in weights]},
                "provenance": provenance(),
            },
        )
        # Before Tune writes any state: a run created here resumes without --trust-run, even after a SIGKILL.
        trust_run(uri or str(run_dir), run_id)

    trainable = tune.with_resources(tune.with_parameters(train_fn, data=store.source), r.resources)
    if resume_dir is not None:
        from ray.tune import Tuner

        tuner = Tuner.restore(uri or str(resume_dir), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        progress = ProgressCallback(r.trial_limit, r.metric, r.mode, r.time_budget_s)
        tuner = build_tuner(
            r, trainable, space_fn, recipes, run_dir, storage_path, callbacks=[progress, fault_guard.StorageGuard()]
        )
    log.info("%s -> %s", r.describe(), run_dir)
    console.line(r.describe())
    if uri is not None:
        push_run_files(run_dir, uri, ("run.json", "study.db"))
    hint = f"search interrupted; continue it with: python -m search.run --resume {uri or run_dir}"
    with resumable_until_finished(run_dir, hint):
        try:
            interrupted, grid = _fit_interrupted(tuner, uri or run_dir, "search.run", "search")
        finally:
            store.close(declared=len(specs))
        record_failed_trials(run_dir, grid)
        if interrupted:
            # Ctrl+C (or SIGTERM): Tune saved its state and stopped; unfinished trials resume from their checkpoints.
            if uri is not None:
                pull_trial_files(uri, run_dir)
            write_trials_csv(run_dir)
            if uri is not None:
                push_run_files(run_dir, uri)
            raise SearchInterrupted(hint)
        from search.searcher import close_running_trials

        try:
            closed = close_running_trials(run_dir / STUDY_FILE, r.name)
            if closed:
                log.info("%d trial(s) the time budget stopped are PRUNED in the Optuna study", closed)
        except Exception as exc:  # noqa: BLE001 - the study is a record; its update must not cost the run
            log.warning("could not mark the stopped trials in %s: %s: %s", STUDY_FILE, type(exc).__name__, exc)
        return _finish(run_dir, r.metric, r.mode, report=s.report, uri=uri, out=console.line)


def _pretrained_weights(profile: str, policy: str) -> list[WeightsRecord]:
    """The ImageNet weights of ``profile``'s models under ``policy``, fetched here, once, before any trial starts (so
    trials on this machine read them from the cache); one log line per model. Returns their ``WeightsRecord``s."""
    from spaces import get_profile
    from trainables.weights import ensure_weights

    records = ensure_weights(get_profile(profile).models, policy)
    for record in records:
        log.info("weights %s", record.describe())
    return records


def _finish(
    run_dir: Path,
    metric: str,
    mode: str,
    report: bool = True,
    uri: str | None = None,
    out: Callable[[str], None] = print,
) -> Path:
    """Write trials.csv, best_config.json, the report; show the leaderboard and the paths with ``out``.

    With a storage URI, the trials' result files are pulled into the local mirror first and the run's own files are
    copied to ``uri`` last, so the storage path holds the whole run, whether the report could be built or not.
    """
    from search.export import export_best

    trials_csv = mark_finished(run_dir, uri)
    trials = load_trials(run_dir)
    out("")
    out(_leaderboard(trials, metric, mode))
    out("")
    try:
        best_path = export_best(run_dir, run_dir / BEST_FILE)
        out(f"best config:  {best_path}")
    except UserError as exc:
        out(f"no best config: {exc}")
    out(f"trials:       {trials_csv}")
    out(f"optuna study: sqlite:///{run_dir / STUDY_FILE}  (optuna-dashboard or optuna.load_study)")
    report_and_push(run_dir, report, uri, out)
    return run_dir


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    if args.resume:
        run_dir, settings = resume_settings(
            args.resume, args.trust_run, args.address, _settings_from_run_info, "search.export / reports.build"
        )
        if args.address:
            settings.address = args.address
        return _run_or_interrupted(settings, resume_dir=run_dir, verbose=args.verbose)
    if not args.space:
        raise UserError("--space is required (e.g. --space pneumonia3class); or --resume RUN_DIR")
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    settings = SearchSettings(**{k: v for k, v in vars(args).items() if k in fields})
    return _run_or_interrupted(settings, verbose=args.verbose)


def _settings_from_run_info(info: dict[str, Any], run_dir: Path, address: str | None = None) -> SearchSettings:
    """The saved flags of a run.json, checked as the flags are: a hand-edited file is an error naming the key."""
    where = run_dir / "run.json"
    saved, name = info.get("settings"), info.get("name")
    if not isinstance(saved, dict) or not isinstance(name, str):
        raise UserError(f'{where}: no "settings" object or "name"; expected a run.json written by search.run')
    if info.get("kind", "search") != "search":
        raise UserError(f"{where}: a {info['kind']} run, not a search; resume it with python -m search.{info['kind']}")
    check_saved_settings(saved, where, SearchSettings)
    if "space" not in saved:
        raise UserError(f"{where}: settings has no space; expected a run.json written by search.run")
    settings = saved_settings({"settings": saved})
    settings.name = name  # a stamped default name must not be stamped anew
    settings.address = address or settings.address
    try:
        validate(settings)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return settings


def _run_or_interrupted(settings: SearchSettings, resume_dir: Path | None = None, verbose: bool = False) -> int:
    return run_or_interrupted(lambda: run_search(settings, resume_dir=resume_dir, verbose=verbose), settings.metric)


if __name__ == "__main__":
    sys.exit(main())
