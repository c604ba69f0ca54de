"""Where this machine keeps what the project caches: decoded images, the registry of runs created here."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$CXR_SEARCH_CACHE``, else ``$XDG_CACHE_HOME/cxr-search``, else ``~/.cache/cxr-search``."""
    env = os.environ.get("CXR_SEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cxr-search"
