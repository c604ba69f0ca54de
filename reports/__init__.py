"""HTML reports of a search or an effect study: ``python -m reports.build RUN_DIR`` (see :mod:`reports.build`).

Cut by page, as ``optuna.visualization`` is cut by plot: ``reports.rundata`` reads the run (through ``runstore``),
``reports.page`` holds what every page is made of, and one module per page (``overview``, ``batch_size``,
``overfitting``, ``resolution``, ``per_class``) holds that page's data types, its collect step and its draw step.
A study's numbers are collected once by ``reports.studydata`` and drawn by the ``study_*`` pages with the figures
of ``reports.study_figures``. ``reports.build`` writes the pages.
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
