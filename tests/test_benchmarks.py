"""Smoke-size runs of the benchmarks: they run and print their ratio line last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_benchmark_quick_prints_its_ratios_last() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"ratio_vs_seed_pipeline=(\d+\.\d+) ratio_vs_compute_limit=(\d+\.\d+)", last)
    assert m, last
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0
    assert re.search(r"^seed_pipeline images_per_s=", proc.stdout, re.M)
    assert re.search(r"^ours images_per_s=", proc.stdout, re.M)
