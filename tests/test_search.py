"""The search end to end with real Ray Tune, real Optuna and real X-rays: run, resume, export, retrain, evaluate.

These start real Ray clusters in subprocesses (``python -m search.run``), as a user would, on a small
patient-disjoint slice of the bundled demo set so that the whole module stays within a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from runstore.trials import load_trials
from trainables.data import DEMO_DATA

pytestmark = pytest.mark.slow

PY = sys.executable
SMALL_SEARCH = ["--max-epochs", "3", "--grace-period", "1", "--reduction-factor", "2", "--no-report", "--seed", "0"]


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _copy_slice(dst: Path, per_folder: dict[str, int]) -> Path:
    """A Kaggle-layout slice of the demo set: the first N files of each folder (folders are patient-disjoint)."""
    for rel, n in per_folder.items():
        src = DEMO_DATA / rel
        out = dst / rel
        out.mkdir(parents=True, exist_ok=True)
        files = sorted(src.iterdir())
        # Interleave bacterial and viral files so both pneumonia subtypes are present.
        if rel.endswith("PNEUMONIA"):
            bac = [f for f in files if "bacteria" in f.name]
            vir = [f for f in files if "virus" in f.name]
            files = [f for pair in zip(bac, vir) for f in pair]
        for f in files[:n]:
            (out / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    return _copy_slice(root, {"train/NORMAL": 70, "train/PNEUMONIA": 140, "test/NORMAL": 25, "test/PNEUMONIA": 50})


@pytest.fixture(scope="module")
def finished_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("search")
    proc = _run(
        [
            "-m",
            "search.run",
            "--space",
            "pneumonia3class",
            "--data",
            str(small_data),
            "--num-samples",
            "8",
            "--storage",
            str(work / "runs"),
            "--name",
            "e2e",
            *SMALL_SEARCH,
        ],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    run_dir = work / "runs" / "e2e"
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


def test_search_runs_every_trial_and_writes_the_run_directory(finished_run: Path) -> None:
    trials = load_trials(finished_run)
    assert trials["trial_id"].nunique() == 8
    assert set(trials["status"]) <= {"COMPLETED", "STOPPED", "ERROR"}
    assert (trials["status"] != "ERROR").all(), trials.loc[trials["status"] == "ERROR", "error"].tolist()
    csv = pd.read_csv(finished_run / "trials.csv")
    assert len(csv) == len(trials) and {"config/model", "config/batch_size", "val_balanced_acc", "epoch"} <= set(csv)
    stdout = (finished_run / "stdout.txt").read_text()
    assert "val_balanced_acc" in stdout and "best config:" in stdout and "seed_tinyvgg" in stdout


def test_seed_recipes_are_evaluated_first(finished_run: Path) -> None:
    trials = load_trials(finished_run)
    first = trials.drop_duplicates("trial_id")
    recipes = first["config/recipe"].fillna("").astype(str)
    names = {r.split("@")[0] for r in recipes if r}
    assert {"seed_tinyvgg", "seed_resnet50_frozen", "seed_resnet50_onecycle", "seed_alexnet_gray"} <= names
    # Tune numbers trials in the order they were created (the ``order`` column): the recipes are the first four.
    assert all(first.sort_values("order")["config/recipe"].fillna("").astype(str).iloc[:4])


def test_asha_stops_weak_trials_early(finished_run: Path) -> None:
    per_trial = load_trials(finished_run).groupby("trial_id")["epochs_done"].max()
    assert (per_trial < 3).sum() >= 1, per_trial
    assert (per_trial == 3).sum() >= 1, per_trial
    # Rungs compare AUROC by default (it ranks trials whose argmax still answers the majority class); TPE and the
    # best trial still go by --metric.
    info = json.loads((finished_run / "run.json").read_text())
    assert info["rung_metric"] == "val_auroc" and info["metric"] == "val_balanced_acc"


def test_the_optuna_study_opens_with_load_study(finished_run: Path) -> None:
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{finished_run / 'study.db'}")
    assert len(study.trials) == 8
    assert study.best_value > 0.3
    assert "model" in study.best_params and "lr" in study.best_params


def test_export_retrain_evaluate_round_trip(finished_run: Path, small_data: Path, tmp_path: Path) -> None:
    best = tmp_path / "best.json"
    proc = _run(["-m", "search.export", str(finished_run), "-o", str(best)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(best.read_text())
    assert doc["format"].startswith("cxr-search/best-config")
    assert doc["data"]["fingerprint"] and doc["provenance"]["packages"]["torch"]
    trials = load_trials(finished_run)
    assert doc["validation"]["val_balanced_acc"] == pytest.approx(trials["val_balanced_acc"].max())

    out = tmp_path / "model"
    proc = _run(
        ["-m", "search.retrain", str(best), "--data", str(small_data), "--epochs", "2", "--out", str(out)], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model.torchscript", "config.json", "labels.json", "preprocessing.json", "metrics.json"):
        assert (out / name).is_file(), name
    members = doc["final"]["members"]
    assert all((out / "members" / str(i) / "weights.pt").is_file() for i in range(len(members)))
    metrics = json.loads((out / "metrics.json").read_text())
    # Train + validation: most to train the members on, a patient-level slice held out for the calibration.
    trained = metrics["trained_on"]
    assert trained["images"] + trained["held_out"] == 210 and trained["held_out"] >= 15 and metrics["test"]["n"] == 75
    assert 0 <= metrics["test"]["calibration"]["ece"] <= 1 and metrics["temperature"] > 0

    proc = _run(["-m", "search.evaluate", str(out), "--data", str(small_data), "--bootstrap", "200"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    assert scores["n"] == 75 and scores["classes"] == ["normal", "bacterial", "viral"]
    # The same model on the same test split: evaluate agrees with retrain's one look.
    assert scores["accuracy"]["value"] == pytest.approx(metrics["test"]["accuracy"]["value"])
    lo, hi = scores["accuracy"]["ci95"]
    assert lo <= scores["accuracy"]["value"] <= hi
    assert sum(map(sum, scores["confusion_matrix"]["counts"])) == 75
    assert set(scores["recall"]) == {"normal", "bacterial", "viral"}

    import torch

    ts = torch.jit.load(str(out / "model.torchscript"))
    prep = json.loads((out / "preprocessing.json").read_text())
    probs = ts(torch.zeros(2, prep["channels"], prep["height"], prep["width"], dtype=torch.uint8))
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_search_resumes_without_losing_or_repeating_trials(
    sig: signal.Signals, small_data: Path, tmp_path: Path
) -> None:
    """Ctrl+C, or SIGTERM (a spot node's notice), stops the search with the resume hint; --resume finishes it."""
    run_dir = tmp_path / "runs" / "resume"
    args = [
        "-m",
        "search.run",
        "--space",
        "pneumonia3class",
        "--data",
        str(small_data),
        "--num-samples",
        "6",
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "resume",
        "--max-concurrent",
        "1",
        "--no-recipes",
        *SMALL_SEARCH,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([PY, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    # Wait until at least two trials have finished (a third has started), then interrupt as Ctrl+C would.
    deadline = time.time() + 600
    while time.time() < deadline and len(list(run_dir.glob("*/params.json"))) < 3:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
        time.sleep(1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130 and b"--resume" in out, out[-2000:]
    before = load_trials(run_dir)
    finished_before = before[before["status"].isin(["COMPLETED", "STOPPED"])]
    done = {}
    for tid, df in finished_before.groupby("trial_id"):
        trial_dir = run_dir / df["trial_dir"].iloc[0]
        if (trial_dir / "result.json").read_text().count("\n") == df["epochs_done"].iloc[0]:
            done[tid] = (trial_dir / "result.json").read_text()
    assert before["trial_id"].nunique() < 6

    resumed = _run(["-m", "search.run", "--resume", str(run_dir)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = load_trials(run_dir)
    assert after["trial_id"].nunique() == 6
    # No epoch reported twice by any trial, and every trial finished before is untouched. Ray's result.json of each
    # trial keeps every epoch reported (a trial trained again from scratch included): 1, 2, ... with none twice.
    assert not after.duplicated(["trial_id", "epoch"]).any()
    for trial_dir in after["trial_dir"].unique():
        lines = (run_dir / trial_dir / "result.json").read_text().splitlines()
        epochs = [json.loads(line)["epoch"] for line in lines if line.strip()]
        assert epochs == list(range(1, len(epochs) + 1)), (trial_dir, epochs)
    for tid, text in done.items():
        trial_dir = run_dir / after.loc[after["trial_id"] == tid, "trial_dir"].iloc[0]
        assert (trial_dir / "result.json").read_text() == text
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-m", "search.run", "--space", "pneumonia9class"],
            "unknown space 'pneumonia9class'; valid spaces: cxr4class",
        ),
        (["-m", "search.run", "--space", "pneumonia3class", "--data", "/no/such/dir"], "--data: /no/such/dir"),
        (["-m", "search.run", "--resume", "."], "holds no run"),
        (["-m", "search.run"], "--space is required"),
        (["-m", "search.run", "--space", "pneumonia3class", "--num-samples", "0"], "--num-samples must be >= 1"),
        (
            ["-m", "search.run", "--space", "pneumonia3class", "--rung-metric", "val_accuracy"],
            "--rung-metric: unknown metric 'val_accuracy'; valid metrics: val_balanced_acc",
        ),
        (["-m", "search.export", "."], "holds no run"),
        (["-m", "search.retrain", "pyproject.toml"], "not a best_config.json"),
        (["-m", "search.evaluate", ".", "--data", "."], "not a model directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    proc = _run(args, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_wrong_layout_and_testless_data_are_exit_code_2(
    finished_run: Path, small_data: Path, shared_data: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    proc = _run(["-m", "search.run", "--space", "pneumonia3class", "--data", str(tmp_path / "empty")], cwd=tmp_path)
    assert proc.returncode == 2 and "no class folders" in proc.stderr and "Traceback" not in proc.stderr
    # A model directory scored against a Kaggle-layout folder with no test/ split: refused, never the train images.
    best = tmp_path / "best.json"
    assert _run(["-m", "search.export", str(finished_run), "-o", str(best)], cwd=tmp_path).returncode == 0
    out = tmp_path / "model"
    retrain = ["-m", "search.retrain", str(best), "--data", str(small_data), "--epochs", "1", "--out", str(out)]
    assert _run(retrain, cwd=tmp_path).returncode == 0
    proc = _run(["-m", "search.evaluate", str(out), "--data", str(shared_data / "chest_xray")], cwd=tmp_path)
    assert proc.returncode == 2 and "no test/ folder" in proc.stderr, proc.stderr
