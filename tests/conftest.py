"""Shared fixtures: paths to the real images, a per-session image cache, quiet logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


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
