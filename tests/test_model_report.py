"""``python -m reports.model``: the final model's page, its site-shift warning, and the page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reports.model import build_model_report, shift_warnings
from search.modeldir import save_model_dir
from tests.conftest import ROOT
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.data import DEMO_DATA, DataCatalog
from trainables.ensemble import FinalModel, Member, predict
from trainables.models import create_model
from trainables.scoring import score

CLASSES = ("normal", "bacterial", "viral")


def _split(value: float, lo: float, hi: float) -> dict:
    return {"balanced_accuracy": {"value": value, "ci95": [lo, hi]}}


def test_the_shift_warning_names_a_test_interval_below_validation() -> None:
    val = _split(0.80, 0.74, 0.86)
    assert shift_warnings({"validation (held out)": val, "test split": _split(0.78, 0.72, 0.84)}) == []
    below = shift_warnings({"validation (held out)": val, "other site": _split(0.66, 0.62, 0.70)})
    assert len(below) == 1 and "other site" in below[0] and "do not even overlap" in below[0]
    assert "shift" in below[0] and "0.660" in below[0]
    touching = shift_warnings({"validation (held out)": val, "x": _split(0.72, 0.66, 0.78)})
    assert len(touching) == 1 and "do not even overlap" not in touching[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with real held-out and test figures of an untrained tinyvgg on real demo X-rays."""
    spec = ImageSpec(32, 32, 1, "stretch")
    catalog = DataCatalog(DEMO_DATA, "pneumonia3class", include_test=True)
    test = catalog.prepare(spec).test
    _, held = catalog.holdout_split(spec, 0.1, 0)
    torch.manual_seed(0)
    net = create_model("tinyvgg", in_channels=1, num_classes=3, image_size=(32, 32)).eval()
    model = FinalModel([Member(net, (32, 32), 1, "none", (0.5,), (0.25,))]).eval()
    metrics = {
        "held_out": score(held.y, predict(model, held.x).numpy(), CLASSES, n_boot=100),
        "test": score(test.y, predict(model, test.x).numpy(), CLASSES, n_boot=100),
    }
    out = tmp_path_factory.mktemp("model") / "m<script>"
    config = TrialConfig(model="tinyvgg", image_size="32", channels=1)
    return save_model_dir(out, model, [config], CLASSES, spec, "pneumonia3class", np.ones(3), "argmax", metrics)


def test_the_model_page_shows_validation_beside_test(model_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reports.model", str(model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = Path(proc.stdout.strip())
    assert page == model_dir / "report.html" and (model_dir / "plotly.min.js").is_file()
    text = page.read_text()
    assert "validation (held out)" in text and "test split" in text and "Reliability" in text
    assert "m&lt;script&gt;" in text and "<h1>Model report: m<script>" not in text  # names are escaped
    n_test = json.loads((model_dir / "metrics.json").read_text())["test"]["n"]
    assert f"<td>{n_test}</td>" in text


def test_a_folder_that_is_not_a_model_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reports.model", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr


@pytest.mark.skipif(
    not shutil.which("chromium") and os.environ.get("CXR_REQUIRE_BROWSER") != "1", reason="needs chromium"
)
def test_the_model_page_draws_every_plot_in_a_browser(model_dir: Path) -> None:
    from reports.screenshots import chrome, wait_for_plots

    page = build_model_report(model_dir, out=model_dir / "page.html")
    driver = chrome()
    try:
        driver.get(page.resolve().as_uri())
        wait_for_plots(driver)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        traces = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.plot')).map(d => (d.data || []).length)"
        )
    finally:
        driver.quit()
    assert severe == []
    assert len(traces) == 4 and all(t >= 1 for t in traces)  # recall, reliability, two confusion matrices
