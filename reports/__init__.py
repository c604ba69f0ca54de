"""HTML reports of a search: ``python -m reports.build RUN_DIR`` (see :mod:`reports.build`).

``reports.collect`` reads a run directory into plain numbers per figure, ``reports.figures`` draws Plotly figures from
them, ``reports.pages`` puts figures and tables into pages, and ``reports.build`` writes the pages.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``python -m reports.build`` does not import reports.build twice.
    if name == "build_report":
        from reports.build import build_report

        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
