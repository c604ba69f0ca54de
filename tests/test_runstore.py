"""The run layer (runstore): the trial table's creation order, the one ranking rule and what follows from it
(leaderboard, best trial, top distinct trials), user errors, and a report built without torch.

Run directories are written the way Ray Tune and ``search.run`` write them (tests/conftest.py), so every expected
value is known in advance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import ROOT, write_run_json, write_trial

from runstore.errors import UserError
from runstore.ranking import best_trial, leaderboard, rank_trials, top_trials
from runstore.trials import load_trials, write_trials_csv

CLASSES = ["normal", "bacterial", "viral"]


def _epochs(bal: list[float], loss: list[float] | None = None) -> list[dict]:
    loss = loss or [1.0] * len(bal)
    return [{"val_balanced_acc": b, "val_loss": v, "val_acc": b} for b, v in zip(bal, loss)]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """Five trials: two pairs that differ only in their seed, one seed recipe, one that never reported."""
    run = write_run_json(tmp_path / "rank", "rank", CLASSES)
    # Trial ids sort against the creation order, so the order column cannot come from sorting names.
    write_trial(run, "ffff0001", 1, {"recipe": "seed_tinyvgg@cpu"}, _epochs([0.40, 0.45], [1.2, 1.1]))
    write_trial(run, "eeee0002", 2, {"lr": 0.01, "seed": 0}, _epochs([0.50, 0.80, 0.70], [1.0, 0.6, 0.9]))
    write_trial(run, "dddd0003", 3, {"lr": 0.01, "seed": 1}, _epochs([0.60, 0.75], [0.9, 0.5]))
    write_trial(run, "cccc0004", 4, {"lr": 0.02}, _epochs([0.55, 0.70], [0.8, 0.7]))
    write_trial(run, "bbbb0005", 5, {"lr": 0.03}, [], error="RuntimeError: CUDA out of memory")
    return run


def test_trial_table_has_the_creation_order(run: Path) -> None:
    trials = load_trials(run)
    assert list(trials.columns[:4]) == ["trial_id", "order", "status", "epoch"]
    first = trials.drop_duplicates("trial_id")
    assert list(first["trial_id"]) == ["ffff0001", "eeee0002", "dddd0003", "cccc0004", "bbbb0005"]
    assert list(first["order"]) == [1, 2, 3, 4, 5]
    csv = pd.read_csv(write_trials_csv(run))
    assert dict(zip(csv["trial_id"], csv["order"])) == {
        "ffff0001": 1,
        "eeee0002": 2,
        "dddd0003": 3,
        "cccc0004": 4,
        "bbbb0005": 5,
    }


def _renumber(trial_dir: Path, epochs: list[int]) -> None:
    """Give a trial's result.json lines these epoch numbers, as a trial that started over reports them."""
    lines = (trial_dir / "result.json").read_text().splitlines()
    rows = [{**json.loads(line), "epoch": e} for line, e in zip(lines, epochs, strict=True)]
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_trial_that_started_over_keeps_only_its_last_start_and_other_repeats_show(tmp_path: Path) -> None:
    """A trial whose checkpoint was unreadable on --resume reports epochs 1, 2 and then 1, 2, 3 from scratch: the
    table holds the second run (the model that finished); a repeated epoch without a restart is kept, to be seen."""
    run = write_run_json(tmp_path / "restart", "restart", CLASSES)
    over = write_trial(run, "aaaa0001", 1, {"epochs": 3}, _epochs([0.3, 0.4, 0.5, 0.6, 0.7]))
    _renumber(over, [1, 2, 1, 2, 3])
    twice = write_trial(run, "bbbb0002", 2, {"epochs": 3}, _epochs([0.3, 0.4, 0.45, 0.5]))
    _renumber(twice, [1, 2, 2, 3])
    trials = load_trials(run)
    restarted = trials[trials["trial_id"] == "aaaa0001"]
    assert restarted["epoch"].tolist() == [1, 2, 3]
    assert restarted["val_balanced_acc"].tolist() == [0.5, 0.6, 0.7]
    assert set(restarted["status"]) == {"COMPLETED"} and set(restarted["epochs_done"]) == {3}
    assert trials[trials["trial_id"] == "bbbb0002"]["epoch"].tolist() == [1, 2, 2, 3]


def test_one_rule_ranks_trials_at_their_best_epoch(run: Path) -> None:
    ranked = rank_trials(load_trials(run), "val_balanced_acc")
    assert list(ranked["trial_id"]) == ["eeee0002", "dddd0003", "cccc0004", "ffff0001", "bbbb0005"]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert list(ranked["best_epoch"]) == [2, 2, 2, 2, 0]  # the never-scored trial ranks last, at epoch 0
    # A loss is minimised: the lowest val_loss counts, at its own epoch.
    by_loss = rank_trials(load_trials(run), "val_loss")
    assert list(by_loss["trial_id"][:2]) == ["dddd0003", "eeee0002"] and by_loss["val_loss"].iloc[0] == 0.5
    # Top 1 plus every seed recipe, wherever it ranked.
    assert list(leaderboard(ranked, top=1)["trial_id"]) == ["eeee0002", "ffff0001"]
    assert list(leaderboard(ranked, top=1)["rank"]) == [1, 4]


def test_top_trials_are_distinct_configs_apart_from_the_seed(run: Path) -> None:
    top = top_trials(run, 3)
    # dddd0003 repeats eeee0002's config with another seed: skipped for the next distinct one.
    assert [t.trial_id for t in top] == ["eeee0002", "cccc0004", "ffff0001"]
    assert [t.best_epoch for t in top] == [2, 2, 2]
    assert top[0].config["lr"] == 0.01 and top[0].config["seed"] == 0 and top[1].config["lr"] == 0.02
    assert top[0].metrics["val_balanced_acc"] == pytest.approx(0.80) and top[0].metrics["val_loss"] == 0.6
    assert len(top_trials(run, 10)) == 3  # only three distinct scored configs; the failed trial never scored
    assert [t.trial_id for t in top_trials(run, 2, metric="val_loss")] == ["dddd0003", "cccc0004"]
    best = best_trial(run)
    assert (best.trial_id, best.best_epoch, best.config) == (top[0].trial_id, top[0].best_epoch, top[0].config)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        top_trials(run, 0)


def test_best_trial_of_a_run_with_no_score_is_a_user_error(tmp_path: Path) -> None:
    run = write_run_json(tmp_path / "none", "none", CLASSES)
    write_trial(run, "aaaa0001", 1, {}, [], error="RuntimeError: boom")
    assert top_trials(run, 3) == []
    with pytest.raises(UserError, match="no trial has reported val_balanced_acc yet"):
        best_trial(run)


def test_report_build_imports_no_torch(run: Path, tmp_path: Path) -> None:
    """``python -m reports.build`` reads CSV-like files: it must not pay for importing torch (pytest has it loaded,
    so this runs in a fresh interpreter), also when the run has an Optuna study to read."""
    study = optuna.create_study(study_name="rank", storage=f"sqlite:///{run / 'study.db'}", direction="maximize")
    for i in range(3):
        dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
        study.add_trial(optuna.trial.create_trial(params={"lr": 10.0 ** -(i + 1)}, distributions=dist, value=0.5 + i))
    out = tmp_path / "report"
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['reports.build', {str(run)!r}, '-o', {str(out)!r}]\n"
        "try:\n"
        "    runpy.run_module('reports.build', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('torch imported:', 'torch' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "torch imported: False False", proc.stdout
    assert proc.stdout.splitlines()[0] == str(out / "index.html")
    page = (out / "index.html").read_text()
    assert "Hyperparameter importance (fANOVA over 3 trials, each at its best epoch)" in page


def test_trial_cli_user_errors_are_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainables.trial", "--data", str(tmp_path / "nope"), "model=tinyvgg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "no such directory" in err and "Traceback" not in err


def test_selection_rules_on_a_noisy_curve() -> None:
    """A lone spike wins "best" but not the smoothed rule; loss-aware ties take the lower-loss epoch nearby."""
    from runstore.ranking import SELECTION_RULES

    curve = {1: 0.50, 2: 0.80, 3: 0.55, 4: 0.68, 5: 0.72, 6: 0.70, 7: 0.62}  # epoch 2: a spike on 312 images
    losses = {1: 1.0, 2: 0.95, 3: 0.9, 4: 0.7, 5: 0.76, 6: 0.8, 7: 0.9}
    assert SELECTION_RULES["best"](curve, "max") == (2, 0.80)
    epoch, value = SELECTION_RULES["smooth3"](curve, "max")
    assert epoch == 5 and value == pytest.approx((0.68 + 0.72 + 0.70) / 3)
    assert SELECTION_RULES["loss_tie"]({**curve, 4: 0.79}, "max", losses) == (4, 0.79)  # within 0.02 of 0.80
    assert SELECTION_RULES["last"](curve, "max") == (7, 0.62)
    # min mode (a loss): the smoothed minimum; a single epoch is its own mean; nothing reported is None
    assert SELECTION_RULES["smooth3"]({1: 1.0, 2: 0.5, 3: 0.6, 4: 0.55}, "min") == (3, pytest.approx(0.55))
    assert SELECTION_RULES["smooth3"]({3: 0.4}, "max") == (3, 0.4)
    assert all(rule({1: float("nan")}, "max") is None for rule in SELECTION_RULES.values())
