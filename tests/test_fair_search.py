"""``--scheduler fair`` end to end with real Ray Tune and real X-rays: trials wait at a rung (PAUSED, their worker
given to a new trial) and go on from their checkpoint, without training a finished epoch again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_search import _copy_slice, _run

from runstore.trials import load_trials

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = _copy_slice(tmp_path_factory.mktemp("data") / "chest_xray", {"train/NORMAL": 60, "train/PNEUMONIA": 120})
    work = tmp_path_factory.mktemp("fair")
    proc = _run(
        ["-m", "search.run", "--space", "pneumonia3class", "--data", str(data), "--num-samples", "7"]
        + ["--max-epochs", "4", "--grace-period", "1", "--reduction-factor", "2", "--scheduler", "fair"]
        + ["--rung-seconds", "0"]  # rungs in epochs: the first recipe reaches rung 1 at epoch 1, alone
        + ["--no-report", "--seed", "0", "--storage", str(work / "runs"), "--name", "fair"],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work / "runs" / "fair"


def test_paused_trials_resume_from_their_checkpoint_without_repeating_an_epoch(fair_run: Path) -> None:
    trials = load_trials(fair_run)
    assert trials["trial_id"].nunique() == 7
    assert (trials["status"] != "ERROR").all(), trials.loc[trials["status"] == "ERROR", "error"].tolist()
    for tid, rows in trials.groupby("trial_id"):
        epochs = sorted(rows["epoch"].astype(int))
        assert epochs == list(range(1, len(epochs) + 1)), f"{tid} trained epochs {epochs}"
    # A row reported after a restore counts its iterations from the restore: those trials were paused and resumed.
    resumed = trials[trials["iterations_since_restore"] < trials["training_iteration"]]
    assert resumed["trial_id"].nunique() >= 1, trials[["trial_id", "epoch", "iterations_since_restore"]]
    # The first recipe reached rung 1 alone: it waited for peers instead of going straight on as under ASHA.
    first = trials[trials["order"] == trials["order"].min()]
    assert first["config/recipe"].astype(str).iloc[0].startswith("seed_")
    if len(first) > 1:
        assert first.loc[first["epoch"] == 2, "iterations_since_restore"].iloc[0] == 1
    info = json.loads((fair_run / "run.json").read_text())
    assert info["scheduler"] == "fair"
