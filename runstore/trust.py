"""The trust boundary for run folders: only runs created here resume without ``--trust-run``.

Resuming a run makes Ray Tune unpickle its ``tuner.pkl`` and searcher state, and unpickling runs code. A run folder
from a bucket or a zip could therefore run anything on ``--resume``. So ``search.run`` records each run it creates in
a registry kept with the creator (``$CXR_SEARCH_CACHE/trusted-runs``: one SHA-256 of the run's location and random
run id per line), before Tune writes any state; ``--resume`` of a run not in it is refused unless the user says
``--trust-run``. The registry is written before the search starts, so a driver killed with SIGKILL still resumes.
Export and reports never unpickle: they read JSON and CSV.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from runstore.cachedir import cache_dir

__all__ = ["REGISTRY_FILE", "is_trusted", "new_run_id", "registry_path", "trust_run"]

REGISTRY_FILE = "trusted-runs"


def registry_path() -> Path:
    return cache_dir() / REGISTRY_FILE


def new_run_id() -> str:
    """A random id for a new run, stored in its run.json: a copied folder's path differs, a guessed id is unlikely."""
    return secrets.token_hex(16)


def _digest(location: str, run_id: str) -> str:
    return hashlib.sha256(f"cxr-search-run\0{location}\0{run_id}".encode()).hexdigest()


def trust_run(location: str, run_id: str) -> None:
    """Record the run at ``location`` (a resolved local path or a storage URI) with ``run_id`` as created here.

    One short line appended with ``O_APPEND``, so concurrent searches do not overwrite each other's entries.
    """
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (_digest(location, run_id) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def is_trusted(location: str, run_id: object) -> bool:
    """True if this machine's registry records the run at ``location`` with ``run_id``."""
    if not isinstance(run_id, str) or not run_id:
        return False
    try:
        lines = registry_path().read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    return _digest(location, run_id) in lines
