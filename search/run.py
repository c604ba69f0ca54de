"""``python -m search.run --space pneumonia3class``: the hyperparameter search, end to end.

Ray Tune runs the trials (``Tuner`` + ``ASHAScheduler`` on epochs + ``ConcurrencyLimiter``), Optuna proposes them
(``OptunaSearch``: TPE, seeded, define-by-run over the space function, the study stored in SQLite inside the run
directory), the seed recipes are queued first so every run measures itself against them. The data set is indexed,
split and decoded once, here, at every image spec the space can ask for, then put into Ray's object store once; every
trial on every node reads that shared copy.

The run ends by writing ``trials.csv`` and ``best_config.json`` and printing a leaderboard. ``--resume RUN_DIR``
continues an interrupted run with every finished trial kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from runstore.trust import is_trusted, new_run_id, registry_path, trust_run
from search.errors import UserError, cli
from search.rundir import (
    BEST_FILE,
    STUDY_FILE,
    load_run_info,
    load_trials,
    metric_mode,
    trial_summary,
    write_run_info,
    write_trials_csv,
)
from search.storage import is_uri, pull_run_files, pull_trial_files, push_run_files, run_uri

__all__ = ["SearchInterrupted", "SearchSettings", "main", "run_search"]

log = logging.getLogger("search.run")

#: Defaults per hardware profile. The CPU ones make the plain command finish in under ten minutes on 2 cores.
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"num_samples": 20, "max_epochs": 12, "grace_period": 1, "reduction_factor": 4, "time_budget_s": 450.0},
    "gpu": {"num_samples": 100, "max_epochs": 30, "grace_period": 2, "reduction_factor": 4, "time_budget_s": None},
}
DEFAULT_METRIC = "val_balanced_acc"
#: Validation metrics every trial reports each epoch (plus ``val_recall_<class>``); ``val_loss`` is minimised.
METRICS = ("val_balanced_acc", "val_acc", "val_macro_f1", "val_auroc", "val_loss")


@dataclasses.dataclass
class SearchSettings:
    """Everything that defines a search; saved to run.json so ``--resume`` needs no flags repeated."""

    space: str
    data: str | None = None
    num_samples: int | None = None
    max_epochs: int | None = None
    grace_period: int | None = None
    reduction_factor: int | None = None
    metric: str = DEFAULT_METRIC
    mode: str = "max"
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    storage: str = "runs"
    name: str | None = None
    address: str | None = None
    time_budget_s: float | None = None
    val_fraction: float = 0.2
    profile: str | None = None
    recipes: bool = True
    report: bool = True
    scheduler: str = "asha"
    startup_trials: int | None = None
    rung_metric: str | None = None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Hyperparameter search for chest X-ray classifiers (Ray Tune + Optuna TPE + ASHA).",
    )
    p.add_argument("--space", help="search space name (see spaces.list_spaces())")
    p.add_argument("--data", help="data folder: Kaggle chest_xray layout or class folders (default: bundled demo set)")
    p.add_argument("--num-samples", type=int, help="trials to run (CPU default 20, GPU 100)")
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
    p.add_argument("--seed", type=int, default=0, help="seeds Optuna's TPE sampler and every trial")
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
        choices=["asha", "fifo"],
        default="asha",
        help="asha stops weak trials at epoch rungs (default); fifo trains every trial to --max-epochs",
    )
    p.add_argument(
        "--rung-metric",
        help="what ASHA compares trials on at its rungs (default val_auroc, or val_loss when --metric is val_loss: "
        "after one epoch AUROC already ranks trials whose argmax still answers the majority class); TPE and the "
        "best trial still go by --metric",
    )
    p.add_argument(
        "--startup-trials", type=int, help="random trials before TPE takes over (default: recipes + 2, >= 5)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run; its saved flags are reused")
    p.add_argument(
        "--trust-run",
        action="store_true",
        help="resume a run this machine did not create (resuming unpickles its Tune state, which can run code: only "
        "for run folders you trust)",
    )
    return p


def _validate(s: SearchSettings) -> None:
    from spaces import list_spaces

    if s.space not in list_spaces():
        raise UserError(f"--space: unknown space {s.space!r}; valid spaces: {', '.join(list_spaces())}")
    for flag, value, low in (
        ("--num-samples", s.num_samples, 1),
        ("--max-epochs", s.max_epochs, 1),
        ("--grace-period", s.grace_period, 1),
        ("--reduction-factor", s.reduction_factor, 2),
        ("--max-concurrent", s.max_concurrent, 1),
        ("--startup-trials", s.startup_trials, 1),
    ):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    for flag, value in (
        ("--cpus-per-trial", s.cpus_per_trial),
        ("--gpus-per-trial", s.gpus_per_trial),
        ("--time-budget", s.time_budget_s),
        ("--val-fraction", s.val_fraction),
    ):
        if value is not None and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
    if s.time_budget_s is not None and s.time_budget_s < 0:
        raise UserError(f"--time-budget must be >= 0 seconds (0 = no budget), got {s.time_budget_s}")
    if s.name is not None:
        _check_run_name(s.name)
    if s.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {s.cpus_per_trial}")
    if s.gpus_per_trial is not None and s.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {s.gpus_per_trial}")
    for flag, value in (("--metric", s.metric), ("--rung-metric", s.rung_metric)):
        if value is not None and value not in METRICS and not value.startswith("val_recall_"):
            raise UserError(
                f"{flag}: unknown metric {value!r}; valid metrics: {', '.join(METRICS)}, val_recall_<class>"
            )
    if not 0 < s.val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1, got {s.val_fraction}")
    if s.data is not None and not Path(s.data).expanduser().is_dir():
        raise UserError(f"--data: {s.data} is not a directory; expected a chest_xray folder or class folders")
    if not s.address:
        _check_local_resources(s.cpus_per_trial, s.gpus_per_trial)


def _check_run_name(name: str) -> None:
    """A run name is one path component, so the run lands inside --storage and nowhere else."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or name != name.strip():
        raise UserError(
            f"--name: {name!r} is not a run name; use one folder name (letters, digits, - _ .), no slashes, "
            "not . or .., no leading or trailing spaces"
        )


def _check_local_resources(cpus: float, gpus: float | None) -> None:
    """A local run (no --address) that asks for more than this machine has would wait forever: refuse it."""
    have_cpus = len(os.sched_getaffinity(0))
    if cpus > have_cpus:
        raise UserError(f"--cpus-per-trial {cpus:g}: this machine has {have_cpus} CPU(s); a trial could never start")
    if gpus:
        import torch

        have_gpus = torch.cuda.device_count()
        if gpus > have_gpus:
            raise UserError(
                f"--gpus-per-trial {gpus:g}: this machine has {have_gpus} GPU(s); a trial could never start "
                "(join a cluster with GPUs with --address)"
            )


def _check_cluster_resources(address: str | None, cpus: float, gpus: float) -> None:
    """After Ray starts: refuse on a local run, warn on a cluster (its autoscaler may add nodes later)."""
    import ray

    have = ray.cluster_resources()
    short = [
        f"{need:g} {kind} per trial but the cluster has {have.get(key, 0):g}"
        for kind, key, need in (("CPU(s)", "CPU", cpus), ("GPU(s)", "GPU", gpus))
        if need > float(have.get(key, 0))
    ]
    if not short:
        return
    if not address:
        raise UserError(f"this machine cannot run a trial: {'; '.join(short)}")
    log.warning("%s: no trial can start until the cluster grows (an autoscaler may add nodes)", "; ".join(short))


class SearchInterrupted(Exception):
    """The search stopped before every trial finished; it can be resumed."""


def _sigint_sentinel(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fit_interrupted(tuner: Any) -> tuple[bool, Any]:
    """Run ``tuner.fit()``; return (True if Ctrl+C or SIGTERM stopped it, the ``ResultGrid``).

    Tune catches SIGINT itself, saves the experiment and returns normally, marking the trials it stopped as
    terminated. Its handler puts back the handler it found, and only when it fires; so a sentinel installed
    before ``fit`` and found again after it means the search was interrupted.
    """
    if threading.current_thread() is not threading.main_thread():
        return False, tuner.fit()
    signal.signal(signal.SIGINT, _sigint_sentinel)
    # SIGTERM (a spot node's notice, `kill`, a scheduler's stop) stops the search as Ctrl+C does: Tune handles SIGINT.
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        grid = tuner.fit()
        return signal.getsignal(signal.SIGINT) is _sigint_sentinel, grid
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous_term)


def _record_failed_trials(run_dir: Path, grid: Any) -> None:
    """Write the trial folders Tune ended as ERROR into run.json.

    A trial folder's ``error.txt`` alone does not say that: Tune also writes it for a failure it recovered from (a
    worker that died, a node that left), after which the trial may have finished normally.
    """
    info = load_run_info(run_dir)
    info["failed_trials"] = sorted(Path(r.path).name for r in grid if r.error is not None)
    write_run_info(run_dir, info)


class _WithFixed:
    """The space plus the values the search fixes (epochs, seed); a class, so Ray can pickle it with the searcher."""

    def __init__(self, space: Any, fixed: dict[str, Any]) -> None:
        self.space = space
        self.fixed = fixed

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {**self.space(trial), **self.fixed}


def default_rung_metric(metric: str) -> str:
    """What ASHA compares trials on at its rungs when ``--rung-metric`` is not given: ``val_auroc``, unless the
    search minimises ``val_loss`` (then that).

    ASHA decides after one epoch, when many trials still answer the majority class for every image: their balanced
    accuracy sits at exactly 1/classes whatever they have learnt, so a slow starter that ends best looks like a
    failure. Macro AUROC ranks the validation images by each class's probability and needs no argmax, so it sees
    that learning earlier. On the 18 seeded trials of ``benchmarks/asha.py`` (FIFO arm, every epoch recorded) the
    epoch-1 value's rank correlation with the trial's final best balanced accuracy was 0.66 for AUROC, 0.60 for
    balanced accuracy, 0.58 for loss and 0.54 for accuracy (0.95 / 0.90 / 0.68 / 0.78 at epoch 2), and
    ``benchmarks/asha_replay.py`` shows rungs on balanced accuracy stop the eventual best trial at epoch 1 where
    rungs on AUROC keep it. Trials are still proposed by TPE and selected on ``--metric``.
    """
    return "val_loss" if metric == "val_loss" else "val_auroc"


def _start_ray(address: str | None, cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": a fresh single-machine instance, even when a `ray start` cluster runs here (ray.init() would join
        # that one silently); joining a cluster is what --address is for.
        ray.init(
            address="local",
            num_cpus=cpus or len(os.sched_getaffinity(0)),
            include_dashboard=False,
            log_to_driver=True,
        )


def _cluster_has_gpus() -> bool:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) > 0


def _leaderboard(trials: pd.DataFrame, metric: str, mode: str, top: int = 8) -> str:
    """Best trials and every seed recipe, one line each."""
    summary = trial_summary(trials, metric, mode)
    if summary.empty:
        return "no trial reported a result"
    recipe_col = "config/recipe"
    is_recipe = summary[recipe_col].fillna("").astype(str).ne("") if recipe_col in summary else False
    shown = summary[(summary.index < top) | is_recipe]
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
    for rank, row in shown.iterrows():

        def cell(key: str, r: pd.Series = row) -> str:
            v = r.get(key)
            if isinstance(v, float):
                return "" if pd.isna(v) else f"{v:.4f}"
            return "" if v is None else str(v)

        values = [
            str(rank + 1),
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


def run_search(settings: SearchSettings, resume_dir: Path | None = None) -> Path:
    """Run (or resume) a search and return its run directory."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from search.export import provenance
    from spaces import get_space, image_specs, recipes_for, space_info
    from trainables.data import DataCatalog
    from trainables.models import list_models, pretrained_available
    from trainables.train import train_fn

    s = settings
    _validate(s)
    info = space_info(s.space)

    # Index and split first: a wrong data folder fails here, before a Ray cluster is started or joined.
    catalog = DataCatalog(s.data, info.task, val_fraction=s.val_fraction, split_seed=s.seed)
    # Tune warns on every checkpoint of short trials that snapshotting is frequent; it is, by design (every epoch).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    _start_ray(s.address)
    profile = s.profile or ("gpu" if _cluster_has_gpus() else "cpu")
    defaults = _PROFILE_DEFAULTS[profile]
    num_samples = s.num_samples or defaults["num_samples"]
    max_epochs = s.max_epochs or defaults["max_epochs"]
    grace = min(s.grace_period or defaults["grace_period"], max_epochs)
    reduction = s.reduction_factor or defaults["reduction_factor"]
    budget = (s.time_budget_s if s.time_budget_s is not None else defaults["time_budget_s"]) or None  # 0: none
    gpus = s.gpus_per_trial if s.gpus_per_trial is not None else (1.0 if profile == "gpu" else 0.0)
    _check_cluster_resources(s.address, s.cpus_per_trial, gpus)
    mode = metric_mode(s.metric)
    rung_metric = s.rung_metric or default_rung_metric(s.metric)
    if profile == "cpu":
        log.info(
            "no GPU in the cluster: the %s space keeps to its CPU profile (small models and sizes that finish "
            "here); the full space runs with --profile gpu on GPUs",
            s.space,
        )

    # -- the run directory ----------------------------------------------------------------------------------------
    name = s.name or f"{s.space}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    # A URI (s3://, gs://, file://): Tune writes there directly, our files go to a local mirror and are copied up.
    remote = is_uri(s.storage)
    storage_path = s.storage if remote else str(Path(s.storage).expanduser().resolve())
    uri = run_uri(s.storage, name) if remote else None
    run_dir = resume_dir or (Path("runs").resolve() / name if remote else Path(storage_path) / name)
    if resume_dir is None and (run_dir / "run.json").exists():
        raise UserError(
            f"--name: {run_dir} already holds a run; continue it with --resume {run_dir} or pick a new name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)

    # -- data: indexed, split and decoded once; shared through the object store ---------------------------------
    t0 = time.perf_counter()
    specs = image_specs(s.space, profile)
    for spec in specs:
        catalog.prepare(spec)
    description = catalog.describe()
    log.info(
        "data %s: %s train / %s validation images, %d image spec(s) decoded in %.1fs",
        description["root"],
        sum(description["train_images"].values()),
        sum(description["val_images"].values()),
        len(specs),
        time.perf_counter() - t0,
    )

    available = frozenset(m for m in list_models() if pretrained_available(m))
    space_fn = get_space(s.space, profile=profile, pretrained_available=available)
    fixed = {"epochs": max_epochs, "seed": s.seed}

    define_by_run = _WithFixed(space_fn, fixed)
    log.info("%s", space_fn.describe())
    seed_recipes = recipes_for(profile, pretrained_available=available) if s.recipes else []
    for r in seed_recipes:
        for note in r.notes:
            log.info("recipe %s", note)
    recipes = [r.config for r in seed_recipes]

    if resume_dir is None:
        run_id = new_run_id()
        write_run_info(
            run_dir,
            {
                "run_id": run_id,
                "settings": dataclasses.asdict(s),
                "name": name,
                "space": s.space,
                "task": info.task,
                "metric": s.metric,
                "mode": mode,
                "profile": profile,
                "max_epochs": max_epochs,
                "num_samples": num_samples,
                "grace_period": grace,
                "reduction_factor": reduction,
                "rung_metric": rung_metric,
                "data": description,
                "storage": s.storage,
                "started": datetime.now(timezone.utc).isoformat(),
                "finished": False,
                "recipes": [r.get("recipe") for r in recipes],
                "provenance": provenance(),
            },
        )
        # Before Tune writes any state: a run created here resumes without --trust-run, even after a SIGKILL.
        trust_run(uri or str(run_dir), run_id)

    resources = {"cpu": s.cpus_per_trial, "gpu": gpus}
    trainable = tune.with_resources(tune.with_parameters(train_fn, data=catalog), resources)

    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

    if resume_dir is not None:
        tuner = Tuner.restore(uri or str(resume_dir), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
        searcher = OptunaSearch(
            space=define_by_run,
            metric=s.metric,
            mode=mode,
            sampler=optuna.samplers.TPESampler(
                seed=s.seed, n_startup_trials=s.startup_trials or max(5, len(recipes) + 2)
            ),
            study_name=name,
            storage=storage,
            points_to_evaluate=[{**r, **fixed} for r in recipes] or None,
        )
        if s.scheduler == "asha":
            scheduler: Any = ASHAScheduler(
                time_attr="training_iteration",
                metric=rung_metric,
                mode=metric_mode(rung_metric),
                max_t=max_epochs,
                grace_period=grace,
                reduction_factor=reduction,
            )
            # ASHA has its own metric (the rung signal) and Tune refuses a second one on the Tuner; OptunaSearch keeps
            # optimising --metric.
            tuner_metric, tuner_mode = None, None
        else:
            scheduler, tuner_metric, tuner_mode = FIFOScheduler(), s.metric, mode
        max_concurrent = s.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1) // s.cpus_per_trial))
        tuner = Tuner(
            trainable,
            tune_config=TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                scheduler=scheduler,
                metric=tuner_metric,
                mode=tuner_mode,
                num_samples=num_samples,
                time_budget_s=budget,
                reuse_actors=False,
            ),
            run_config=RunConfig(
                name=name,
                storage_path=storage_path,
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                failure_config=FailureConfig(max_failures=1),
                verbose=1,
            ),
        )
    log.info(
        "search %s: %d trials, up to %d epochs, %s, %s per trial%s -> %s",
        s.space,
        num_samples,
        max_epochs,
        f"ASHA on {rung_metric}, grace {grace}, reduction {reduction}"
        if s.scheduler == "asha"
        else "FIFO (no early stopping)",
        resources,
        f", budget {budget:.0f}s" if budget else "",
        run_dir,
    )
    if uri is not None:
        push_run_files(run_dir, uri, ("run.json", "study.db"))
    interrupted, grid = _fit_interrupted(tuner)
    _record_failed_trials(run_dir, grid)
    if interrupted:
        # Ctrl+C (or SIGTERM): Tune saved its state and stopped; the unfinished trials resume from their checkpoints.
        if uri is not None:
            pull_trial_files(uri, run_dir)
        write_trials_csv(run_dir)
        if uri is not None:
            push_run_files(run_dir, uri)
        raise SearchInterrupted(f"search interrupted; continue it with: python -m search.run --resume {uri or run_dir}")
    return _finish(run_dir, s.metric, mode, report=s.report, uri=uri)


def _finish(run_dir: Path, metric: str, mode: str, report: bool = True, uri: str | None = None) -> Path:
    """Write trials.csv, best_config.json, the report; print the leaderboard and the paths.

    With a storage URI, the trials' result files are pulled into the local mirror first and the run's own files are
    copied to ``uri`` last, so the storage path holds the whole run.
    """
    from search.export import export_best

    info = load_run_info(run_dir)
    info["finished"] = True
    info["ended"] = datetime.now(timezone.utc).isoformat()
    write_run_info(run_dir, info)
    if uri is not None:
        pull_trial_files(uri, run_dir)
    trials_csv = write_trials_csv(run_dir)
    trials = load_trials(run_dir)
    print()
    print(_leaderboard(trials, metric, mode))
    print()
    try:
        best_path = export_best(run_dir, run_dir / BEST_FILE)
        print(f"best config:  {best_path}")
    except UserError as exc:
        print(f"no best config: {exc}")
    print(f"trials:       {trials_csv}")
    print(f"optuna study: sqlite:///{run_dir / STUDY_FILE}  (optuna-dashboard or optuna.load_study)")
    if report:
        try:
            from reports.build import build_report

            index = build_report(run_dir)
            print(f"report:       {index}")
        except ImportError:
            pass
    if uri is not None:
        push_run_files(run_dir, uri)
        print(f"storage:      {uri}  (local mirror: {run_dir})")
    print(f"run dir:      {run_dir}")
    return run_dir


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    if args.resume:
        if is_uri(args.resume):
            # A run kept in object storage: fetch its own files into the local mirror, then resume from the URI.
            run_dir = Path("runs").resolve() / args.resume.rstrip("/").rsplit("/", 1)[-1]
            pull_run_files(args.resume, run_dir)
        else:
            run_dir = Path(args.resume).expanduser().resolve()
        info = load_run_info(run_dir)
        settings = _settings_from_run_info(info, run_dir, args.address)
        if info.get("finished") is True:
            raise UserError(
                f"--resume: {run_dir} was finished (ended {info.get('ended', 'at an unknown time')}); nothing to "
                "resume. Start a new run with --name, or rebuild its files with search.export / reports.build"
            )
        storage = info.get("storage", "")
        experiment = run_uri(storage, info["name"]) if isinstance(storage, str) and is_uri(storage) else str(run_dir)
        if not is_trusted(experiment, info.get("run_id")):
            if not args.trust_run:
                raise UserError(
                    f"--resume: {experiment} was not created on this machine (not in {registry_path()}); resuming "
                    "unpickles its Tune state, which can run code. If you trust this folder, add --trust-run"
                )
            if isinstance(info.get("run_id"), str) and info["run_id"]:
                trust_run(experiment, info["run_id"])
        from ray.tune import Tuner

        if not Tuner.can_restore(experiment):
            raise UserError(f"--resume: {experiment} holds no Ray Tune experiment state to resume")
        if args.address:
            settings.address = args.address
        return _run_or_interrupted(settings, resume_dir=run_dir)
    if not args.space:
        raise UserError("--space is required (e.g. --space pneumonia3class); or --resume RUN_DIR")
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    settings = SearchSettings(**{k: v for k, v in vars(args).items() if k in fields})
    return _run_or_interrupted(settings)


def _settings_from_run_info(info: dict[str, Any], run_dir: Path, address: str | None = None) -> SearchSettings:
    """The saved flags of a run.json, checked as the flags are: a hand-edited file is an error naming the key."""
    where = run_dir / "run.json"
    saved, name = info.get("settings"), info.get("name")
    if not isinstance(saved, dict) or not isinstance(name, str):
        raise UserError(f'{where}: no "settings" object or "name"; expected a run.json written by search.run')
    known = {f.name: f for f in dataclasses.fields(SearchSettings)}
    unknown = sorted(set(saved) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    if "space" not in saved:
        raise UserError(f"{where}: settings has no space; expected a run.json written by search.run")
    for key, value in saved.items():
        kind = str(known[key].type)
        ok = (
            (value is None and "None" in kind)
            or (kind.startswith("str") and isinstance(value, str))
            or (kind.startswith("bool") and isinstance(value, bool))
            or (kind.startswith("int") and isinstance(value, int) and not isinstance(value, bool))
            or (kind.startswith("float") and isinstance(value, (int, float)) and not isinstance(value, bool))
        )
        if not ok:
            raise UserError(f"{where}: setting {key} is {value!r}; expected {kind}")
    settings = SearchSettings(**saved)
    settings.name = name  # a stamped default name must not be stamped anew
    settings.address = address or settings.address
    try:
        _validate(settings)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return settings


def _run_or_interrupted(settings: SearchSettings, resume_dir: Path | None = None) -> int:
    try:
        run_dir = run_search(settings, resume_dir=resume_dir)
    except SearchInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    return _exit_without_result(run_dir, settings.metric)


def _exit_without_result(run_dir: Path, metric: str) -> int:
    """0 if some trial scored ``metric``; else 1 with one line: the first trial error and where the logs are."""
    trials = load_trials(run_dir)
    if metric in trials.columns and trials[metric].notna().any():
        return 0
    errors = trials[trials["error"].fillna("").astype(str).ne("")] if "error" in trials.columns else trials.iloc[0:0]
    first = ""
    if not errors.empty:
        row = errors.iloc[0]
        first = f"; first error (trial {row['trial_id']}): {' '.join(str(row['error']).split())[:300]}"
        logs = f"{run_dir / str(row['trial_dir']) / 'error.txt'}"
    else:
        logs = str(run_dir)
    print(
        f"error: no trial reported {metric} ({len(trials.groupby('trial_id'))} trial(s)){first}; logs: {logs}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
