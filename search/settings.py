"""The search's settings: the flags as given (:class:`SearchSettings`) and the search they resolve to on this hardware
(:class:`ResolvedSearch`, which is also what ``run.json`` stores). Pure: no Ray, no training, testable as is."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runstore.errors import UserError
from runstore.metrics import DEFAULT_METRIC, METRICS, metric_mode

__all__ = [
    "DEFAULT_LOCAL_SHARE",
    "DEFAULT_METRIC",
    "METRICS",
    "PROFILE_DEFAULTS",
    "RUNG_SHARE",
    "SCHEDULERS",
    "ResolvedSearch",
    "SearchSettings",
    "default_rung_metric",
    "resolve",
    "run_name",
    "saved_settings",
    "validate",
    "validate_run_flags",
]

#: Defaults per hardware profile. The CPU ones make the plain command finish in under ten minutes on 2 cores.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"num_samples": 20, "max_epochs": 12, "grace_period": 1, "reduction_factor": 4, "time_budget_s": 450.0},
    "gpu": {"num_samples": 100, "max_epochs": 30, "grace_period": 2, "reduction_factor": 4, "time_budget_s": None},
}

#: ``--local-share`` default: off. Measured on the default CPU search (README, "Local moves around the best trial"), the
#: best trial there is a recipe that costs 30 s an epoch, so its moves cost as much and crowd out the proposals.
DEFAULT_LOCAL_SHARE = 0.0

#: ``--scheduler`` choices: ASHA (Ray's), fair rungs with a progressive top rung (``search.schedulers``), none (FIFO).
SCHEDULERS = ("asha", "fair", "fifo")


#: The fair scheduler's rung unit on the ``cpu`` profile, as a share of the budget's worker-seconds (450 s x 2 / 40 =
#: 22.5 s by default: one epoch of the dearest seed recipe there).
RUNG_SHARE = 1 / 40


@dataclasses.dataclass
class SearchSettings:
    """The flags of a search as given (``None``: the profile's default); saved in run.json so ``--resume`` needs no
    flags repeated."""

    space: str
    data: str | None = None
    num_samples: int | None = None
    max_epochs: int | None = None
    grace_period: int | None = None
    reduction_factor: int | None = None
    metric: str = DEFAULT_METRIC
    mode: str = "max"  # unused: the direction follows the metric (kept so older run.json files still load)
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
    rung_seconds: float | None = None  # fair rungs in seconds of training (None: the profile's default; 0: epochs)
    local_share: float | None = None  # share of proposals that move around the best trial (None: the default, off)
    full_trainings: int | None = None  # proposals the budget must afford to train to the end (None or 0: off)
    weights: str = "auto"  # ImageNet weights: auto (cache, else download), local (cache only), none (from scratch)


def validate(s: SearchSettings) -> None:
    """``UserError`` naming the flag for anything out of range; nothing is started before this passes."""
    from spaces import list_spaces

    if s.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler: unknown scheduler {s.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    if s.space not in list_spaces():
        raise UserError(f"--space: unknown space {s.space!r}; valid spaces: {', '.join(list_spaces())}")
    for flag, value, low in (
        ("--num-samples", s.num_samples, 1),
        ("--max-epochs", s.max_epochs, 1),
        ("--grace-period", s.grace_period, 1),
        ("--reduction-factor", s.reduction_factor, 2),
        ("--startup-trials", s.startup_trials, 1),
        ("--full-trainings", s.full_trainings, 0),
    ):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if s.local_share is not None and not (math.isfinite(s.local_share) and 0 <= s.local_share <= 1):
        raise UserError(f"--local-share must be a number from 0 to 1 (a share of the proposals), got {s.local_share}")
    if s.rung_seconds is not None and not (math.isfinite(s.rung_seconds) and s.rung_seconds >= 0):
        raise UserError(
            f"--rung-seconds must be a finite number of seconds >= 0 (0 = rungs in epochs), got {s.rung_seconds}"
        )
    for flag, value in (("--time-budget", s.time_budget_s), ("--val-fraction", s.val_fraction)):
        if value is not None and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
    if s.time_budget_s is not None and s.time_budget_s < 0:
        raise UserError(f"--time-budget must be >= 0 seconds (0 = no budget), got {s.time_budget_s}")
    for flag, value in (("--metric", s.metric), ("--rung-metric", s.rung_metric)):
        if value is not None and value not in METRICS and not value.startswith("val_recall_"):
            raise UserError(
                f"{flag}: unknown metric {value!r}; valid metrics: {', '.join(METRICS)}, val_recall_<class>"
            )
    if not 0 < s.val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1, got {s.val_fraction}")
    validate_run_flags(s)


def validate_run_flags(s: Any) -> None:
    """The checks of the flags every command that runs trials on Ray takes (``weights``, ``name``, ``data``,
    ``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent``, ``address`` of a search's or a study's settings)."""
    from trainables.weights import check_policy

    check_policy(s.weights)
    if s.max_concurrent is not None and s.max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {s.max_concurrent}")
    for flag, value in (("--cpus-per-trial", s.cpus_per_trial), ("--gpus-per-trial", s.gpus_per_trial)):
        if value is not None and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
    if s.name is not None:
        check_run_name(s.name)
    if s.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {s.cpus_per_trial}")
    if s.gpus_per_trial is not None and s.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {s.gpus_per_trial}")
    if s.data is not None and not Path(s.data).expanduser().is_dir():
        raise UserError(f"--data: {s.data} is not a directory; expected a chest_xray folder or class folders")
    if not s.address:
        check_local_resources(s.cpus_per_trial, s.gpus_per_trial)


def check_run_name(name: str) -> None:
    """A run name is one path component, so the run lands inside --storage and nowhere else."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or name != name.strip():
        raise UserError(
            f"--name: {name!r} is not a run name; use one folder name (letters, digits, - _ .), no slashes, "
            "not . or .., no leading or trailing spaces"
        )


def check_local_resources(cpus: float, gpus: float | None) -> None:
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


def saved_settings(info: dict[str, Any]) -> SearchSettings:
    """The flags a run was started with, from its ``run.json`` (what ``--resume`` reuses). A run.json from before
    ``--weights`` existed resumes as ``local``: those searches read the weights cache only."""
    return SearchSettings(**{"weights": "local", **info["settings"]})


def default_rung_metric(metric: str) -> str:
    """What ASHA compares trials on at its rungs without ``--rung-metric``: ``val_auroc``, or ``val_loss`` when the
    search minimises that. After one epoch many trials still answer the majority class, so their balanced accuracy
    says nothing yet while AUROC (no argmax) already ranks them; the measurements are in the README ("ASHA against
    no early stopping")."""
    return "val_loss" if metric == "val_loss" else "val_auroc"


@dataclasses.dataclass(frozen=True)
class ResolvedSearch:
    """Every setting of one search with the profile's defaults filled in; ``run.json`` stores these fields."""

    settings: SearchSettings
    name: str
    space: str
    task: str
    profile: str
    metric: str
    mode: str
    rung_metric: str
    scheduler: str
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    time_budget_s: float | None
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int
    seed: int
    storage: str

    @property
    def resources(self) -> dict[str, float]:
        """What one trial asks Ray for."""
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    @property
    def fixed(self) -> dict[str, Any]:
        """The config values every trial shares (Tune's ``param_space`` merges them into each suggested config)."""
        return {"epochs": self.max_epochs, "seed": self.seed}

    @property
    def trial_limit(self) -> int | None:
        """How many trials Tune may start: ``--num-samples`` when given; with a time budget and no ``--num-samples``,
        None: proposals go on until the budget ends (a budgeted search that stopped at a trial count left a worker
        idle once its cheap trials were done). ``num_samples`` stays the count the budget's cost share is planned
        for (:attr:`epoch_share_s`)."""
        if self.time_budget_s and self.settings.num_samples is None:
            return None
        return self.num_samples

    @property
    def full_trainings(self) -> int:
        """How many proposals the budget must afford to train to ``max_epochs`` (``--full-trainings``; 0, the
        default, leaves only the per-trial share). Off by default: measured on the default CPU search, proposals
        trained to the end this way did not beat the recipes (README, "Only what can be trained to the end")."""
        return self.settings.full_trainings or 0

    @property
    def epoch_share_s(self) -> float | None:
        """The longest estimated epoch a proposal may cost on the ``cpu`` profile with a time budget: a fair share
        of the budget per trial (time budget x trials at once / trials: 450 x 2 / 20 = 45 s by default), and with
        ``--full-trainings N`` no more than lets N proposals run all ``max_epochs`` (450 x 2 / (4 x 12) = 18.75 s
        for 4): a proposal that cannot be trained as long as the recipes cannot be compared with them at the end.
        None (no limit) on ``gpu`` or without a time budget."""
        if self.profile != "cpu" or not self.time_budget_s:
            return None
        worker_s = self.time_budget_s * self.max_concurrent
        share = worker_s / self.num_samples
        if self.full_trainings:
            share = min(share, worker_s / (self.full_trainings * self.max_epochs))
        return share

    @property
    def rung_unit_s(self) -> float | None:
        """Seconds of a trial's own training per rung unit of the fair scheduler, or None for rungs in epochs:
        ``--rung-seconds``, else on the ``cpu`` profile with a time budget ``RUNG_SHARE`` of its worker-seconds
        (there one epoch costs 1.5 s for one model and 30 s for another); epochs everywhere else."""
        if self.scheduler != "fair":
            return None
        given = self.settings.rung_seconds
        if given is not None:
            return given or None
        if self.profile != "cpu" or not self.time_budget_s:
            return None
        return self.time_budget_s * self.max_concurrent * RUNG_SHARE

    @property
    def local_share(self) -> float:
        """Share of the proposals after the startup trials that move one to three choices away from the best trial
        so far (``search.samplers``): ``--local-share``, else ``DEFAULT_LOCAL_SHARE``."""
        return DEFAULT_LOCAL_SHARE if self.settings.local_share is None else self.settings.local_share

    def startup_trials(self, n_recipes: int) -> int:
        """Random trials before TPE takes over: the flag, else the recipes plus two (at least five)."""
        return self.settings.startup_trials or max(5, n_recipes + 2)

    def describe(self) -> str:
        """One line for the log and the console."""
        unit = f"{self.rung_unit_s:g} s of training" if self.rung_unit_s else "epoch"
        rungs = f"on {self.rung_metric}, grace {self.grace_period} x {unit}, reduction {self.reduction_factor}"
        stopping = {"asha": f"ASHA {rungs}", "fair": f"fair rungs {rungs}, progressive top rung"}.get(
            self.scheduler, "FIFO (no early stopping)"
        )
        budget = f", budget {self.time_budget_s:.0f}s" if self.time_budget_s else ""
        trials = f"{self.trial_limit} trials" if self.trial_limit is not None else "trials until the budget ends"
        return (
            f"search {self.space}: {trials}, up to {self.max_epochs} epochs, {stopping}, "
            f"{self.resources} per trial{budget}"
        )

    def run_info(self) -> dict[str, Any]:
        """The fields as plain JSON values, for ``run.json``."""
        return dataclasses.asdict(self)


def run_name(settings: SearchSettings, now: datetime) -> str:
    """``--name``, else ``<space>-<UTC time>``."""
    return settings.name or f"{settings.space}-{now.strftime('%Y%m%d-%H%M%S')}"


def resolve(
    settings: SearchSettings,
    *,
    task: str,
    cluster_cpus: float,
    cluster_gpus: float,
    now: datetime | None = None,
) -> ResolvedSearch:
    """The search ``settings`` ask for on a cluster with ``cluster_cpus`` CPUs and ``cluster_gpus`` GPUs.

    The profile is ``gpu`` when the cluster has GPUs (unless ``--profile`` says otherwise); each unset flag takes its
    profile default; ``--time-budget 0`` means none; the run name defaults to ``<space>-<UTC time>``.
    """
    s = settings
    profile = s.profile or ("gpu" if cluster_gpus > 0 else "cpu")
    defaults = PROFILE_DEFAULTS[profile]
    max_epochs = s.max_epochs or defaults["max_epochs"]
    budget = s.time_budget_s if s.time_budget_s is not None else defaults["time_budget_s"]
    return ResolvedSearch(
        settings=s,
        name=run_name(s, now or datetime.now(timezone.utc)),
        space=s.space,
        task=task,
        profile=profile,
        metric=s.metric,
        mode=metric_mode(s.metric),
        rung_metric=s.rung_metric or default_rung_metric(s.metric),
        scheduler=s.scheduler,
        num_samples=s.num_samples or defaults["num_samples"],
        max_epochs=max_epochs,
        grace_period=min(s.grace_period or defaults["grace_period"], max_epochs),
        reduction_factor=s.reduction_factor or defaults["reduction_factor"],
        time_budget_s=budget or None,
        cpus_per_trial=s.cpus_per_trial,
        gpus_per_trial=s.gpus_per_trial if s.gpus_per_trial is not None else (1.0 if profile == "gpu" else 0.0),
        max_concurrent=s.max_concurrent or max(1, int(cluster_cpus // s.cpus_per_trial)),
        seed=s.seed,
        storage=s.storage,
    )
