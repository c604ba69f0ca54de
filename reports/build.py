"""``python -m reports.build RUN_DIR [-o OUT]``: a run directory to HTML pages a person opens in a browser, offline.

For a search: ``index.html`` (overview) and one page per question (batch size, overfitting, resolution and
augmentation, per class). For an effect study (run.json ``kind: study``, ``python -m search.study``): ``index.html``
(the claims and verdicts, the effect with intervals), learning curves, overfitting, leaving chance (batch size only)
and time. Written into ``OUT`` (default ``RUN_DIR/report/``), with ``plotly.min.js`` beside them: nothing is fetched
from the network. Works on a finished run and on one still going (it shows what has been reported so far).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reports import (
    batch_size,
    overfitting,
    overview,
    per_class,
    resolution,
    study_chance,
    study_cost,
    study_curves,
    study_gap,
    study_overview,
)
from reports.page import Page, render_page, write_plotly_js
from reports.rundata import RunData, load_run
from reports.studydata import collect_study, is_study
from runstore.atomic import write_text
from runstore.errors import UserError, cli
from runstore.layout import PAGES_MANIFEST, REPORT_DIR

__all__ = ["PAGES", "REPORT_DIR", "STUDY_PAGES", "build_pages", "build_report", "main"]

#: A search's pages in nav order, each a module with ``build_page(run) -> Page``; the first is the index.
PAGES = (overview, batch_size, overfitting, resolution, per_class)
#: A study's pages in nav order, each a module with ``build_page(study) -> Page`` (or None: not for this study).
STUDY_PAGES = (study_overview, study_curves, study_gap, study_chance, study_cost)


def build_pages(run: RunData) -> list[Page]:
    """Every page of the report of ``run`` (a search's or a study's), in nav order."""
    if is_study(run):
        study = collect_study(run)
        return [page for module in STUDY_PAGES if (page := module.build_page(study)) is not None]
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
    _drop_stale_pages(out, [page.filename for page in pages])
    return out / pages[0].filename


def _drop_stale_pages(out: Path, written: list[str]) -> None:
    """Remove the pages an earlier build wrote into ``out`` that this one did not (a page with nothing to show now,
    or another run's report in the same folder), so no stale page sits beside the new ones. Only files listed in
    the folder's manifest, which each build writes, are ever removed."""
    manifest = out / PAGES_MANIFEST
    try:
        before = json.loads(manifest.read_text())
    except (OSError, ValueError):
        before = []
    for name in before if isinstance(before, list) else []:
        if isinstance(name, str) and name not in written and Path(name).name == name and name.endswith(".html"):
            (out / name).unlink(missing_ok=True)
    write_text(manifest, json.dumps(written))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reports.build",
        description="Turn a search's or a study's run directory into HTML pages (Plotly, offline).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by search.run or search.study")
    p.add_argument("-o", "--out", help="output folder (default: RUN_DIR/report)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print(build_report(Path(args.run_dir).expanduser(), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
