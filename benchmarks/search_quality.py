"""Does the search beat its own seed recipes in its budget? Seven arms side by side at the same wall budget and seeds.

Arms (issue 14):

- ``today``: the defaults of the issue's day, ``--scheduler asha`` (Ray's ASHA on val_auroc rungs, TPE only,
  ``--local-share 0``, recipes queued first), capped at ``--num-samples`` trials;
- ``default``: what ``search.run`` does with no flags but the budget's: ``today`` without the trial cap, proposing
  until the budget ends (the default since 2026-12-07);
- ``local``: ASHA with half the proposals after the startup trials moved around the best trial so far
  (``--local-share 0.5``, ``search.samplers``);
- ``fair``: the new scheduler, ``--scheduler fair`` (``search.schedulers``: fair rungs, progressive top rung);
- ``afford``: fair rungs in epochs, and only proposals cheap enough that ``--full-trainings`` (4) of them could each
  train all ``--max-epochs`` in the budget (``search.run --full-trainings``): the strong models trained as long as
  the recipes, not the dear ones judged after one epoch nor the cheap ones at their plateau;
- ``random_asha``: random search + ASHA (every trial a seeded random start-up trial);
- ``recipes``: the seed recipes alone, each trained to the end (FIFO): the score a proposal must beat.

Per arm, over the seeds: the best validation balanced accuracy at the budget (mean and spread), the time until a
proposed (non-recipe) configuration first beats the recipes arm's best (seconds; ``-`` when it never does), the share
of epoch time spent on proposed configurations, and epoch time / (wall x CPUs). Last line, for the ``afford`` arm (else
``fair``, else the first other arm that searches)::

    beats_recipes=K/N proposed_share=X utilisation=Y

K of N seeds where a proposal beat the recipes arm's best; X and Y the means over the seeds.

    python benchmarks/search_quality.py --replay RUN_DIR [RUN_DIR ...]   # seconds: recorded curves, simulated time
    python benchmarks/search_quality.py --quick                          # real searches, 7 arms x 1 seed x 120 s
    python benchmarks/search_quality.py --out DIR                        # real: 7 arms x 3 seeds x 450 s (~3 h)
    python benchmarks/search_quality.py --summarise DIR                  # the figures of the runs kept in DIR

With ``--out DIR`` a benchmark stopped half-way starts again where it was: finished runs are kept and re-read.

``--replay`` feeds the learning curves recorded in finished runs (their ``trials.csv``/trial folders, as
``benchmarks/asha_replay.py`` does) through each arm's scheduler logic (Ray's own ASHA bracket, ``search.schedulers
.FairRungs``) on ``--workers`` simulated workers, each epoch lasting as long as it did when recorded and each trial
start or resume costing ``--start-s`` seconds (process start, checkpoint restore). A replay cannot propose: every arm
draws from the recorded configurations, recipes first, proposals in the recorded order for seed 0 and a seeded
shuffle for the others (``random_asha`` in an independent shuffle), so it compares the *schedulers*, not TPE against
random search; the ``local`` arm, whose point is what it proposes, is skipped. A trial a scheduler would train past
the end of its recorded curve ends there; the count is printed (``censored``): runs made with early stopping record
short curves, and a FIFO run (``search.run --scheduler fifo``) gives the most faithful replay.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from ray.tune.schedulers.async_hyperband import _Bracket

from runstore.metrics import metric_mode
from runstore.trials import load_trials
from search.schedulers import CONTINUE, PAUSE, STOP, FairRungs
from search.settings import RUNG_SHARE

ARMS = ("today", "default", "local", "fair", "afford", "random_asha", "recipes")
SCORE = "val_balanced_acc"  # what the search selects on (its default --metric)
TIMING = "benchmark-timing.json"  # in each real run: when search.run started and how long it took


@dataclass
class Epoch:
    """One trained epoch on the timeline: which trial, whether it is a recipe, when it ended, its score."""

    trial: str
    recipe: bool
    end_s: float
    seconds: float
    score: float


@dataclass
class ArmResult:
    """One arm at one seed: its epochs and the wall time they were measured against."""

    epochs: list[Epoch]
    wall_s: float
    cpus: float
    censored: int = 0

    @property
    def best(self) -> float:
        return max((e.score for e in self.epochs), default=float("nan"))

    def time_to_beat(self, target: float) -> float | None:
        """Seconds until an epoch of a proposed configuration first scores above ``target``."""
        times = [e.end_s for e in self.epochs if not e.recipe and e.score > target]
        return min(times) if times else None

    @property
    def proposed_share(self) -> float:
        total = sum(e.seconds for e in self.epochs)
        return sum(e.seconds for e in self.epochs if not e.recipe) / total if total else 0.0

    @property
    def utilisation(self) -> float:
        return sum(e.seconds for e in self.epochs) / (self.wall_s * self.cpus) if self.wall_s else 0.0


# -- replay: recorded curves through the schedulers' decisions, in simulated time ---------------------------------


@dataclass
class Curve:
    trial: str
    recipe: bool
    seconds: list[float]
    rung: list[float]  # the rung metric, signed so that larger is better
    score: list[float]


def load_curves(run_dirs: list[str], rung_metric: str) -> list[Curve]:
    """The recorded learning curves of ``run_dirs`` in the order their trials were created; a recipe recorded in
    several runs is kept once (its longest curve)."""
    sign = -1.0 if metric_mode(rung_metric) == "min" else 1.0
    curves: dict[str, Curve] = {}
    for run_dir in run_dirs:
        trials = load_trials(run_dir).dropna(subset=["epoch"])
        trials = trials.sort_values(["order", "epoch"]) if "order" in trials else trials.sort_values("epoch")
        for tid, df in trials.groupby("trial_id", sort=False):
            label = str(df["config/recipe"].iloc[0]) if "config/recipe" in df else ""
            recipe = label not in ("", "nan")
            df = df.sort_values("epoch")
            curve = Curve(
                trial=f"{Path(run_dir).name}/{tid}",
                recipe=recipe,
                seconds=[float(s) for s in df["time_this_iter_s"]],
                rung=[sign * float(v) for v in df[rung_metric]],
                score=[float(v) for v in df[SCORE]],
            )
            key = label if recipe else curve.trial
            if key not in curves or len(curve.seconds) > len(curves[key].seconds):
                curves[key] = curve
    return list(curves.values())


@dataclass
class _Sim:
    """Workers taking trials; each epoch lasts as recorded. The arm's policy decides after every epoch."""

    curves: dict[str, Curve]
    queue: list[str]
    workers: int
    budget_s: float
    start_s: float
    open_limit: int
    now: float = 0.0
    epochs: list[Epoch] = field(default_factory=list)
    paused: dict[str, int] = field(default_factory=dict)  # trial -> epochs done
    censored: int = 0


def simulate(
    curves: list[Curve],
    order: list[str],
    policy: str,
    *,
    workers: int,
    budget_s: float,
    start_s: float,
    grace: int,
    reduction: int,
    max_t: int,
    unit_s: float | None = None,
) -> ArmResult:
    """One arm over the recorded ``curves`` (trials started in ``order``) under ``policy`` (asha, fair or fifo)."""
    by_id = {c.trial: c for c in curves}
    queue = list(order)
    fair = FairRungs(grace, reduction, max_t, unit_s=unit_s) if policy == "fair" else None
    bracket = _Bracket(min_t=grace, max_t=max_t, reduction_factor=reduction, s=0) if policy == "asha" else None
    open_limit = workers + (reduction if policy == "fair" else 0)  # search.tuner.searcher_concurrency
    paused: dict[str, int] = {}
    running = 0
    events: list[tuple[float, int, str, int]] = []  # (end time, tie-break, trial, epoch)
    out: list[Epoch] = []
    seq = censored = 0

    def launch(now: float, trial: str, done: int) -> None:
        nonlocal seq, running, censored
        curve = by_id[trial]
        if done >= len(curve.seconds):
            censored += 1
            return
        running += 1
        heapq.heappush(events, (now + start_s + curve.seconds[done], seq, trial, done + 1))
        seq += 1

    def fill(now: float) -> None:
        """Give every free worker a trial: promoted paused ones, then new ones, then the best-standing paused."""
        while running < workers and now < budget_s:
            promoted = [t for t in paused if fair is not None and t in fair.promoted]
            finish = fair.to_finish(budget_s - now) if fair is not None and paused and not promoted else None
            if promoted:
                trial = max(promoted, key=fair.standing)
            elif finish is not None:
                trial = finish
            elif queue and running + len(paused) < open_limit:
                trial = queue.pop(0)
            elif paused:
                trial = max(paused, key=fair.standing) if fair is not None else next(iter(paused))
            else:
                return
            launch(now, trial, paused.pop(trial, 0))

    fill(0.0)
    last = 0.0
    while events:
        end, _, trial, epoch = heapq.heappop(events)
        running -= 1
        last = min(max(last, end), budget_s)
        if end > budget_s:
            continue  # the budget ended the search mid-epoch: this epoch never reported
        curve = by_id[trial]
        out.append(Epoch(trial, curve.recipe, end, curve.seconds[epoch - 1], curve.score[epoch - 1]))
        value = curve.rung[epoch - 1]
        if fair is not None:
            decision = fair.on_result(trial, epoch, value, curve.seconds[epoch - 1])
            for loser in list(fair.rejected):
                paused.pop(loser, None)
                fair.forget(loser)
        elif bracket is not None:
            decision = bracket.on_result(_Trial(trial), epoch, value)
        else:
            decision = CONTINUE
        if epoch >= max_t:
            decision = STOP
        if decision == CONTINUE:
            if epoch < len(curve.seconds):
                running += 1
                heapq.heappush(events, (end + curve.seconds[epoch], seq, trial, epoch + 1))
                seq += 1
            else:
                censored += 1
        elif decision == PAUSE:
            paused[trial] = epoch
        fill(end)
    return ArmResult(out, last, workers, censored)  # the search ends at its budget or with its last trial


@dataclass
class _Trial:
    trial_id: str


def replay_arms(args: argparse.Namespace) -> dict[str, list[ArmResult]]:
    curves = load_curves(args.replay, args.rung_metric)
    recipes = [c.trial for c in curves if c.recipe]
    proposals = [c.trial for c in curves if not c.recipe]
    if not curves:
        raise SystemExit(f"--replay: no recorded epochs in {', '.join(args.replay)}")
    results: dict[str, list[ArmResult]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        shuffled = list(proposals)
        if seed:
            random.Random(seed).shuffle(shuffled)
        random_order = list(proposals)
        random.Random(1000 + seed).shuffle(random_order)
        plan = {
            "today": ("asha", recipes + shuffled),
            "fair": ("fair", recipes + shuffled),
            "random_asha": ("asha", recipes + random_order),
            "recipes": ("fifo", recipes),
        }
        for arm in args.arms:
            # "local" and "afford" choose what to propose, and "default" differs from "today" in how many trials
            # it starts: a replay only reorders the recorded ones.
            if arm not in plan:
                continue
            policy, order = plan[arm]
            results[arm].append(
                simulate(
                    curves,
                    order,
                    policy,
                    workers=args.workers,
                    budget_s=args.budget,
                    start_s=args.start_s,
                    grace=args.grace_period,
                    reduction=args.reduction_factor,
                    max_t=args.max_epochs,
                    unit_s=fair_unit_s(args),
                )
            )
    return results


def fair_unit_s(args: argparse.Namespace) -> float | None:
    """The fair arm's rung unit in the replay, as ``search.settings`` resolves it on the cpu profile."""
    if args.rung_seconds is not None:
        return args.rung_seconds or None
    return args.budget * args.workers * RUNG_SHARE


# -- real: search.run per arm and seed, timed from process start to exit ------------------------------------------


def real_arm(arm: str, seed: int, args: argparse.Namespace, storage: Path) -> ArmResult:
    """One real ``python -m search.run`` for ``arm`` at ``seed``, timed from the process start to its exit."""
    from spaces import recipes_for

    name = f"quality-{arm}-{seed}"
    flags = ["--space", args.space, "--seed", str(seed), "--time-budget", str(args.budget), "--profile", "cpu"]
    flags += ["--max-epochs", str(args.max_epochs), "--storage", str(storage), "--name", name, "--no-report"]
    flags += ["--weights", "local"]
    if args.data:
        flags += ["--data", args.data]
    if arm == "default":  # search.run's own defaults for everything else
        return _run_timed(arm, seed, args, storage, name, flags)
    if arm == "recipes":
        flags += ["--scheduler", "fifo", "--num-samples", str(len(recipes_for("cpu")))]
    else:
        flags += ["--scheduler", "fair" if arm in ("fair", "afford") else "asha"]
        if args.num_samples:  # 0: no cap, proposals until the budget ends
            flags += ["--num-samples", str(args.num_samples)]
    if arm == "fair" and args.rung_seconds is not None:
        flags += ["--rung-seconds", str(args.rung_seconds)]
    if arm == "random_asha":
        flags += ["--startup-trials", str(args.num_samples or 10_000)]  # every trial a random one
    flags += ["--local-share", "0.5" if arm == "local" else "0"]
    # Every arm but `afford` keeps the per-trial cost share only, as on the day each was first measured.
    flags += ["--full-trainings", str(args.full_trainings) if arm == "afford" else "0"]
    if arm == "afford":
        flags += ["--rung-seconds", "0"]
    return _run_timed(arm, seed, args, storage, name, flags)


def _run_timed(arm: str, seed: int, args: argparse.Namespace, storage: Path, name: str, flags: list[str]) -> ArmResult:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "search.run", *flags], capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{arm} seed {seed}: search.run failed:\n{proc.stderr[-3000:]}")
    timing = {"arm": arm, "seed": seed, "started": t0, "wall_s": wall, "cpus": float(args.cpus)}
    (storage / name / TIMING).write_text(json.dumps(timing))
    return load_arm(storage / name)


def load_arm(run_dir: Path) -> ArmResult:
    """A finished benchmark run (its trials and the ``TIMING`` file ``real_arm`` wrote) as an arm result."""
    timing = json.loads((run_dir / TIMING).read_text())
    trials = load_trials(run_dir).dropna(subset=["epoch"])
    recipe = trials.get("config/recipe", pd.Series("", index=trials.index)).fillna("").astype(str)
    t0 = timing["started"]
    epochs = [
        Epoch(str(r["trial_id"]), recipe[i] != "", float(r["timestamp"]) - t0, float(r["time_this_iter_s"]), r[SCORE])
        for i, r in trials.iterrows()
    ]
    return ArmResult(epochs, timing["wall_s"], timing["cpus"])


def summarise(out: Path, seeds: list[int], arms: list[str]) -> dict[str, list[ArmResult]]:
    """The arms of the runs kept in ``out`` (``--out`` of earlier real runs), seed by seed: re-reads, trains nothing."""
    results: dict[str, list[ArmResult]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        for arm in arms:
            run_dir = out / f"quality-{arm}-{seed}"
            if not (run_dir / TIMING).is_file():
                raise SystemExit(f"--summarise: {run_dir} has no {TIMING} (not a finished benchmark run)")
            results[arm].append(load_arm(run_dir))
    return results


# -- report -------------------------------------------------------------------------------------------------------


def report(results: dict[str, list[ArmResult]]) -> list[str]:
    """One line per arm, then the goal line (last) for the ``afford`` arm, else ``fair``, else the first other
    searching arm that ran."""
    targets = [r.best for r in results.get("recipes", [])]
    lines = []
    for arm, runs in results.items():
        if not runs:
            continue
        bests = [r.best for r in runs]
        spread = statistics.pstdev(bests) if len(bests) > 1 else 0.0
        beats = [r.time_to_beat(t) for r, t in zip(runs, targets)] if targets else []
        to_beat = " ".join("-" if b is None else f"{b:.0f}" for b in beats) or "-"
        lines.append(
            f"{arm:11s} seeds={len(runs)} best_{SCORE}={statistics.mean(bests):.4f}+-{spread:.4f} "
            f"time_to_beat_recipes_s=[{to_beat}] "
            f"proposed_share={statistics.mean(r.proposed_share for r in runs):.2f} "
            f"utilisation={statistics.mean(r.utilisation for r in runs):.2f} "
            f"epochs={statistics.mean(len(r.epochs) for r in runs):.1f} censored={sum(r.censored for r in runs)}"
        )
    searched = [arm for arm in ("afford", "fair", *ARMS) if arm != "recipes" and results.get(arm)]
    fair = results[searched[0]] if searched else []
    k = sum(r.time_to_beat(t) is not None for r, t in zip(fair, targets))
    share = statistics.mean(r.proposed_share for r in fair) if fair else 0.0
    util = statistics.mean(r.utilisation for r in fair) if fair else 0.0
    lines.append(f"beats_recipes={k}/{len(fair)} proposed_share={share:.2f} utilisation={util:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replay", nargs="+", metavar="RUN_DIR", help="replay the curves recorded in these runs")
    p.add_argument("--quick", action="store_true", help="real searches, smoke size: 1 seed, 120 s, 4 epochs")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated search seeds")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms out of {', '.join(ARMS)}")
    p.add_argument("--budget", type=float, default=450.0, help="wall budget per search, seconds")
    p.add_argument("--workers", type=int, default=2, help="replay: trials at once (the CPUs)")
    p.add_argument("--cpus", type=float, default=2.0, help="real: the CPUs the searches use")
    p.add_argument("--start-s", type=float, default=3.0, help="replay: seconds to start or resume a trial")
    p.add_argument("--max-epochs", type=int, default=12)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=int, default=4)
    p.add_argument("--rung-metric", default="val_auroc")
    p.add_argument(
        "--rung-seconds", type=float, help="fair arm: its rung unit in seconds (default: search.run's; 0 = epochs)"
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=20,
        help="real: trials per search (0: until the budget ends; `default` never caps)",
    )
    p.add_argument(
        "--full-trainings", type=int, default=4, help="afford arm: proposals the budget must afford to train to the end"
    )
    p.add_argument("--space", default="pneumonia3class")
    p.add_argument("--data", help="real: data folder (default: the bundled demo set)")
    p.add_argument("--out", help="real: keep the runs here (default: a temporary directory)")
    p.add_argument("--summarise", metavar="DIR", help="re-read the real runs kept in DIR (an earlier --out)")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.arms = args.arms.split(",")
    if set(args.arms) - set(ARMS) or "recipes" not in args.arms:
        p.error(f"--arms: choose from {', '.join(ARMS)}, recipes included (it sets the score to beat)")
    if args.replay:
        results = replay_arms(args)
    elif args.summarise:
        results = summarise(Path(args.summarise), args.seeds, args.arms)
    else:
        if args.quick:
            args.seeds, args.budget, args.max_epochs, args.num_samples = args.seeds[:1], 120.0, 4, 8
        results = {arm: [] for arm in ARMS}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out).resolve() if args.out else Path(tmp)
            for seed in args.seeds:
                for arm in args.arms:
                    run_dir = out / f"quality-{arm}-{seed}"
                    if (run_dir / TIMING).is_file():  # finished by an earlier, interrupted benchmark: kept
                        results[arm].append(load_arm(run_dir))
                        continue
                    if run_dir.exists():
                        print(f"{run_dir}: unfinished by an earlier benchmark, run again", file=sys.stderr)
                        shutil.rmtree(run_dir)
                    results[arm].append(real_arm(arm, seed, args, out))
    for line in report(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
