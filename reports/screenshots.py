"""``python -m reports.screenshots REPORT_DIR -o docs/screenshots``: full-page PNGs of every report page.

Opens each page in headless Chromium (Selenium with the system ``chromedriver``; Debian: ``apt-get install chromium
chromium-driver``), waits until every plot has drawn, and saves the whole page, 1400 px wide. The tests use
:func:`chrome` and :func:`wait_for_plots` too, so the screenshots and the browser test see pages the same way.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from runstore.errors import UserError, cli

__all__ = ["CHROMEDRIVER", "chrome", "chromium_missing", "main", "take_screenshots", "wait_for_plots"]

CHROMEDRIVER = "/usr/bin/chromedriver"

#: JavaScript: how many plot divs a page has, and how many Plotly has drawn into.
_PLOT_STATE = """
return {
  divs: document.querySelectorAll('div.plot').length,
  drawn: Array.from(document.querySelectorAll('div.plot')).filter(d => d.classList.contains('js-plotly-plot')
         && d.querySelector('.main-svg')).length,
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def chromium_missing() -> str | None:
    """Why a headless browser cannot start here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not Path(CHROMEDRIVER).is_file() or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return f"chromium / {CHROMEDRIVER} not installed (apt-get install -y chromium chromium-driver)"
    return None


def chrome(width: int = 1400, height: int = 900) -> Any:
    """A headless Chromium driven by Selenium, with the browser console log kept (``goog:loggingPrefs``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = chromium_missing()
    if reason:
        raise UserError(f"cannot start a browser: {reason}")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_for_plots(driver: Any, timeout: float = 30.0) -> dict[str, int]:
    """Wait until every ``div.plot`` on the current page holds a drawn Plotly figure; return the counts."""
    deadline = time.monotonic() + timeout
    state: dict[str, int] = {}
    while time.monotonic() < deadline:
        state = driver.execute_script(_PLOT_STATE)
        if driver.execute_script("return document.readyState") == "complete" and state["drawn"] >= state["divs"]:
            return state
        time.sleep(0.2)
    raise TimeoutError(f"plots not drawn after {timeout:.0f}s: {state}")


def take_screenshots(report_dir: str | Path, out_dir: str | Path, width: int = 1400) -> list[Path]:
    """One full-page PNG per HTML page of ``report_dir``, named after the page (index.png, batch_size.png, ...)."""
    report_dir = Path(report_dir)
    pages = sorted(report_dir.glob("*.html"), key=lambda p: (p.name != "index.html", p.name))
    if not pages:
        raise UserError(f"{report_dir}: no report pages (*.html); build one with python -m reports.build RUN_DIR")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver = chrome(width)
    written = []
    try:
        for page in pages:
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            driver.get(page.resolve().as_uri())
            state = wait_for_plots(driver)
            height = int(state["height"])
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            # Plots are responsive: let them redraw at the full-page size before the picture is taken.
            driver.execute_script("window.dispatchEvent(new Event('resize'));")
            time.sleep(1.5)
            shot = driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False, "fromSurface": True}
            )
            path = out_dir / (page.stem + ".png")
            path.write_bytes(base64.b64decode(shot["data"]))
            written.append(path)
    finally:
        driver.quit()
    return written


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("report_dir", metavar="REPORT_DIR", help="a folder written by python -m reports.build")
    p.add_argument("-o", "--out", default="docs/screenshots", help="where the PNGs go (default docs/screenshots)")
    p.add_argument("--width", type=int, default=1400, help="page width in pixels (default 1400)")
    args = p.parse_args(argv)
    for path in take_screenshots(args.report_dir, args.out, args.width):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
