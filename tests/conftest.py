"""Shared fixtures: paths to the real images, a per-session image cache, quiet logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.config import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def run_benchmark(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python benchmarks/<script> args...`` from the checkout, as a user runs it; its output captured as text."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the real chest X-rays (see its README). Missing is an error, not a skip."""
    if not (SHARED_DATA / "chest_xray" / "train").is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; clone beside ../shared or set CXR_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session decodes into its own cache, so a test never depends on a previous run's files."""
    path = tmp_path_factory.mktemp("cxr-cache")
    os.environ["CXR_SEARCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _offline_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No test reaches the internet for ImageNet weights: an empty torch hub cache of the session's own, and downloads
    pointed at a closed local port (refused at once), so ``--weights auto`` goes on as ``local`` within milliseconds.
    Tests that download serve the file themselves (tests/test_weights.py)."""
    path = tmp_path_factory.mktemp("torch-home")
    os.environ["TORCH_HOME"] = str(path)
    os.environ["CXR_SEARCH_WEIGHTS_URL"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    return path


# -- run directories for the report tests ------------------------------------------------------------------------

#: The config every synthetic trial starts from (TrialConfig fields, as Ray writes them to params.json).
BASE_CONFIG = {**TrialConfig().to_dict(), "width": 1.0, "dropout": 0.0, "epochs": 4}


def write_trial(
    run_dir: Path,
    trial_id: str,
    index: int,
    config: dict,
    epochs: list[dict],
    error: str | None = None,
    truncated: bool = False,
) -> Path:
    """One trial folder as Ray Tune writes it: params.json, result.json (one JSON line per epoch), error.txt.

    ``epochs``: one dict of metrics per epoch (``epoch`` is added); ``truncated`` leaves half a line at the end, as
    a result.json being written looks when it is read.
    """
    config = {**BASE_CONFIG, **config}
    tdir = (
        run_dir / f"train_fn_{trial_id}_{index}_batch_size={config['batch_size']},lr={config['lr']}_2026-11-22_06-11-32"
    )
    tdir.mkdir(parents=True)
    (tdir / "params.json").write_text(json.dumps(config, indent=2))
    lines = []
    for i, metrics in enumerate(epochs, start=1):
        row = {"epoch": i, **metrics, "trial_id": trial_id, "training_iteration": i, "done": False, "config": config}
        lines.append(json.dumps(row))
    if epochs or truncated:
        text = "".join(line + "\n" for line in lines)
        if truncated:
            text += json.dumps({"epoch": len(epochs) + 1, "trial_id": trial_id})[:25]
        (tdir / "result.json").write_text(text)
    if error is not None:
        (tdir / "error.txt").write_text(
            f"Failure # 1 (occurred at 2026-11-22)\nTraceback (most recent call last):\n{error}\n"
        )
    return tdir


def write_run_json(run_dir: Path, name: str, classes: list[str], finished: bool = True, **extra: object) -> Path:
    """A run.json as search.run writes it (the keys the report reads)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "name": name,
        "space": "pneumonia3class",
        "task": "pneumonia3class",
        "metric": "val_balanced_acc",
        "mode": "max",
        "max_epochs": 4,
        "grace_period": 1,
        "reduction_factor": 2,
        "num_samples": 6,
        "finished": finished,
        "data": {"classes": classes},
        "settings": {"scheduler": "asha", "max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
        **extra,
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    return run_dir


def _copy_slice(dst: Path, per_folder: dict[str, int]) -> Path:
    """A Kaggle-layout slice of the demo set: the first N files of each folder (folders are patient-disjoint)."""
    from trainables.data import DEMO_DATA

    for rel, n in per_folder.items():
        out = dst / rel
        out.mkdir(parents=True, exist_ok=True)
        files = sorted((DEMO_DATA / rel).iterdir())
        if rel.endswith("PNEUMONIA"):  # interleave bacterial and viral so both subtypes are present
            bac = [f for f in files if "bacteria" in f.name]
            vir = [f for f in files if "virus" in f.name]
            files = [f for pair in zip(bac, vir) for f in pair]
        for f in files[:n]:
            (out / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real small search (6 trials, up to 3 epochs, 210 demo images) that builds its report at the end.

    Returns the run directory and the search's stdout. Shared by the report tests and the browser test.
    """
    data = _copy_slice(
        tmp_path_factory.mktemp("report-data") / "chest_xray", {"train/NORMAL": 70, "train/PNEUMONIA": 140}
    )
    work = tmp_path_factory.mktemp("report-search")
    args = ["--space", "pneumonia3class", "--data", str(data), "--num-samples", "6", "--max-epochs", "3"]
    args += ["--grace-period", "1", "--reduction-factor", "2", "--seed", "0", "--storage", str(work / "runs")]
    args += ["--name", "report-e2e"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "search.run", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work / "runs" / "report-e2e", proc.stdout
