"""The search's console: a status line and a few lines on the console, the full output in RUN/search.log; a report
that fails to build costs neither the run nor its copy in the storage URI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from clusterlib import driver_env, make_slice, run_search
from ray.tune.experiment import Trial

from search.console import Console, Progress

#: The most lines a search may print (stdout and stderr together, piped) without -v.
MAX_LINES = 60


def _trial(status: str, epochs: int, recipe: str = "", **metrics: float) -> Trial:
    trial = Trial("__fake", stub=True, config={"recipe": recipe})
    trial.set_status(status)
    for epoch in range(1, epochs + 1):
        trial.update_last_result({"training_iteration": epoch, **{k: v * epoch / epochs for k, v in metrics.items()}})
    return trial


def test_progress_counts_trials_and_epochs_and_names_the_best() -> None:
    best = _trial("TERMINATED", 4, "seed_tinyvgg@cpu", val_balanced_acc=0.8)
    trials = [best, _trial("ERROR", 1, val_balanced_acc=0.9), _trial("RUNNING", 2, val_balanced_acc=0.6)]
    trials.append(_trial("PENDING", 0))
    progress = Progress.of(trials, total=20, metric="val_balanced_acc", mode="max")
    assert (progress.total, progress.done, progress.running, progress.epochs) == (20, 2, 1, 7)
    assert progress.best == pytest.approx(0.9)
    line = progress.line(elapsed_s=75, budget_s=450)
    assert line.startswith("[1m15s, 6m15s left] trials 2/20 done, 1 running, 7 epochs | best val_balanced_acc 0.9000")
    assert Progress.of(trials[:1], 20, "val_balanced_acc", "max").best_trial == f"{best.trial_id} seed_tinyvgg@cpu"
    assert Progress.of(trials, 20, "val_balanced_acc", "min").best == pytest.approx(0.2), "min: lowest epoch"
    assert "no result yet" in Progress.of([], 20, "val_loss", "min").line(3, None)
    unlimited = Progress.of(trials, None, "val_balanced_acc", "max").line(elapsed_s=75, budget_s=450)
    assert "] trials 2 done, 1 running" in unlimited, "no trial count but the budget: no '/N'"


def test_piped_status_lines_are_rate_limited_and_a_terminal_redraws_in_place() -> None:
    piped = Console(io.StringIO(), live=False)
    for i in range(100):
        piped.status(f"status {i}")
    piped.status("final", force=True)
    piped.line("leaderboard")
    assert piped.stream.getvalue() == "final\nleaderboard\n"
    live = Console(io.StringIO(), live=True)
    live.status("a", force=True)
    live.status("b", force=True)
    live.line("done")
    assert live.stream.getvalue() == "\ra\x1b[K\rb\x1b[K\ndone\n"


@pytest.mark.slow
def test_a_piped_search_is_short_logs_in_full_and_survives_a_failing_report(tmp_path: Path) -> None:
    data = make_slice(tmp_path / "chest_xray")
    # A real broken input for the report: RUN/report is a file, so the report cannot be written there.
    mirror = tmp_path / "runs" / "quiet"
    mirror.mkdir(parents=True)
    (mirror / "report").write_text("not a folder")
    store = tmp_path / "store"
    args = ["--space", "smoke", "--data", str(data), "--num-samples", "3", "--max-epochs", "2", "--seed", "0"]
    args += ["--grace-period", "1", "--reduction-factor", "2", "--storage", f"file://{store}", "--name", "quiet"]
    code, output = run_search(args, driver_env(tmp_path / "cache"), cwd=tmp_path)

    assert code == 0, output[-5000:]
    lines = output.splitlines()
    assert len(lines) <= MAX_LINES, output
    assert "rank  trial" in output and "best config:" in output and "trials 3/3 done" in output
    rebuild = f"python -m reports.build {mirror}"
    assert "report:       not built" in output and rebuild in output
    # The full output is in the run directory: Tune's trial tables, the driver's log, the report's traceback.
    log = (mirror / "search.log").read_text()
    assert "Trial status:" in log and "search.run" in log and "Traceback" in log and rebuild in log
    assert "Traceback" not in output
    # The run's files reached the storage URI although the report failed.
    for name in ("run.json", "study.db", "trials.csv", "best_config.json", "search.log"):
        assert (store / "quiet" / name).is_file(), name
    assert json.loads((store / "quiet" / "run.json").read_text())["finished"] is True
    assert (store / "quiet" / "trials.csv").read_text() == (mirror / "trials.csv").read_text()
