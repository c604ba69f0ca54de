"""The report in a real browser: headless Chromium opens every page and checks what a person would see.

Every page of a real small search's report loads with no console error and every plot has drawn data; a run whose
class name and config values are HTML/script tags shows them as text, with no alert and no injected element.
Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped, saying so, without them,
except where ``CXR_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes a missing browser a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_run_json, write_trial

from reports.build import build_report
from reports.screenshots import CHROMEDRIVER, chrome, wait_for_plots

PAGES = ["index.html", "batch_size.html", "overfitting.html", "resolution.html", "per_class.html"]

if not (shutil.which("chromium") and Path(CHROMEDRIVER).is_file()):
    _missing = f"headless browser test needs chromium and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver"
    if os.environ.get("CXR_REQUIRE_BROWSER") == "1":
        pytest.fail(_missing, pytrace=False)
    pytest.skip(_missing, allow_module_level=True)

#: Per plot div: its trace count and whether every trace carries data (x/y, z, values or parcoords dimensions).
_PLOTS = """
return Array.from(document.querySelectorAll('div.plot')).map(d => {
  const data = d.data || [];
  const filled = a => Array.isArray(a) ? a.length > 0 : (a && a.length > 0);
  const ok = t => (filled(t.x) && filled(t.y)) || filled(t.z) || filled(t.values)
    || (filled(t.dimensions) && t.dimensions.every(dim => filled(dim.values)));
  return {id: d.id, traces: data.length, empty: data.filter(t => !ok(t)).map(t => t.type + ':' + (t.name || ''))};
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chrome()
    yield driver
    driver.quit()


def _open(driver: Any, page: Path) -> dict[str, Any]:
    """Load a page, wait for its plots; return what the checks need."""
    from selenium.common.exceptions import NoAlertPresentException

    driver.get_log("browser")  # drop anything logged by the previous page
    driver.get(page.resolve().as_uri())
    wait_for_plots(driver)
    try:
        alert = driver.switch_to.alert.text
    except NoAlertPresentException:
        alert = None
    return {
        "alert": alert,
        "severe": [e for e in driver.get_log("browser") if e["level"] == "SEVERE"],
        "plots": driver.execute_script(_PLOTS),
        "text": driver.execute_script("return document.body.innerText"),
        "title": driver.title,
    }


@pytest.mark.slow
def test_every_page_of_a_real_report_renders_its_plots(browser: Any, reported_run: tuple[Path, str]) -> None:
    run_dir, _ = reported_run
    report = run_dir / "report"
    for name in PAGES:
        seen = _open(browser, report / name)
        assert seen["alert"] is None, (name, seen["alert"])
        assert seen["severe"] == [], (name, seen["severe"])
        assert seen["plots"], f"{name}: no plots"
        for plot in seen["plots"]:
            assert plot["traces"] >= 1 and plot["empty"] == [], (name, plot)
        assert "report-e2e" in seen["title"] and "6 trials (" in seen["text"]
        # The nav reaches every page.
        hrefs = browser.execute_script("return Array.from(document.querySelectorAll('nav a')).map(a => a.href)")
        assert [h.rsplit("/", 1)[-1] for h in hrefs] == PAGES
    # A page a person would check first: the overview has the leaderboard, the curves and the ASHA numbers.
    index = _open(browser, report / "index.html")
    assert "Leaderboard" in index["text"] and "ASHA saved" in index["text"] and "seed_tinyvgg@cpu" in index["text"]
    assert len(index["plots"]) == 5  # best by trial, by compute, parallel coordinates, importance, ASHA rungs


def test_tags_in_names_and_values_show_as_text(browser: Any, tmp_path: Path) -> None:
    evil_class = "<img src=x onerror=alert(1)>"
    evil = "<script>alert(1)</script>"
    run = write_run_json(tmp_path / "evil", f"evil {evil}", ["normal", evil_class, "viral"])
    metrics = {"train_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.5, "num_params": 10}
    metrics |= {"val_recall_normal": 1.0, f"val_recall_{evil_class}": 0.5, "val_recall_viral": 0.0}
    metrics |= {"val_confusion": "[[4, 0, 0], [2, 2, 0], [4, 0, 0]]"}
    write_trial(
        run,
        "aaaa0001",
        1,
        {"recipe": evil, "resize": evil},
        [metrics | {"val_balanced_acc": 0.5, "timestamp": 1}, metrics | {"val_balanced_acc": 0.6, "timestamp": 2}],
    )
    write_trial(
        run,
        "bbbb0002",
        2,
        {"batch_size": 8},
        [metrics | {"val_balanced_acc": 0.4, "timestamp": 3}],
        error=f"ValueError: {evil}",
    )
    index = build_report(run)
    for name in PAGES:
        seen = _open(browser, index.parent / name)
        assert seen["alert"] is None and seen["severe"] == [], (name, seen)
        assert browser.execute_script("return document.querySelectorAll('img, main script:not([src])').length") == len(
            [p for p in seen["plots"]]
        ), name  # no injected <img>; the only inline scripts are the plots' own
        assert f"evil {evil}" in seen["text"] and f"evil {evil}" in seen["title"]
    overview = _open(browser, index.parent / "index.html")
    assert f"ValueError: {evil}" in overview["text"] and evil in overview["text"]  # the recipe and the error, as text
    per_class = _open(browser, index.parent / "per_class.html")
    assert evil_class in per_class["text"]
    ticks = browser.execute_script(
        "return Array.from(document.querySelectorAll('g.xtick text')).map(t => t.textContent)"
    )
    assert evil_class in ticks  # the confusion matrix's axis shows the class name as text
    legend = browser.execute_script(
        "return Array.from(document.querySelectorAll('.legendtext')).map(t => t.textContent)"
    )
    assert evil_class in legend  # and so does the recall figure's legend
