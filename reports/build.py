"""``python -m reports.build RUN_DIR [-o OUT]``: a run directory to HTML pages a person opens in a browser, offline.

Writes ``index.html`` (overview) and one page per question (batch size, overfitting, resolution and augmentation,
per class) into ``OUT`` (default ``RUN_DIR/report/``), with ``plotly.min.js`` beside them: nothing is fetched from
the network. Works on a finished run and on one still going (it shows what has been reported so far).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports import batch_size, overfitting, overview, per_class, resolution
from reports.page import Page, render_page, write_plotly_js
from reports.rundata import RunData, load_run
from runstore.atomic import write_text
from runstore.errors import UserError, cli
from runstore.layout import REPORT_DIR

__all__ = ["PAGES", "REPORT_DIR", "build_pages", "build_report", "main"]

#: The pages in nav order, each a module with ``build_page(run) -> Page``; the first is the index.
PAGES = (overview, batch_size, overfitting, resolution, per_class)


def build_pages(run: RunData) -> list[Page]:
    """Every page of the report of ``run``, in nav order."""
    return [module.build_page(run) for module in PAGES]


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` into ``out`` (default ``run_dir/report``); return the index page's path."""
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / REPORT_DIR
    if out.exists() and not out.is_dir():
        raise UserError(f"-o: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_plotly_js(out)
    pages = build_pages(run)
    for page in pages:
        write_text(out / page.filename, render_page(page, pages, run))
    return out / pages[0].filename


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reports.build",
        description="Turn a search's run directory into HTML pages (Plotly, offline).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by search.run")
    p.add_argument("-o", "--out", help="output folder (default: RUN_DIR/report)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print(build_report(Path(args.run_dir).expanduser(), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
