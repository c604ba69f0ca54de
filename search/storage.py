"""A run whose ``--storage`` is a URI (``s3://bucket/runs``, ``gs://...``, ``file:///shared/runs``): one place for all.

Ray Tune writes its own files (trial folders with ``result.json`` and checkpoints, the experiment state that
``--resume`` restores) straight to ``<storage>/<name>``, from the driver and from every worker node. This project's
files are written by the driver to a local mirror, ``runs/<name>`` under the current directory (SQLite needs a local
file for the Optuna study), and copied to ``<storage>/<name>`` next to Tune's: when the run starts (``run.json``,
``study.db``), when it is interrupted and when it ends (also ``trials.csv``, ``best_config.json``, ``report/`` and
the full log, ``search.log``).
Before the driver writes ``trials.csv`` it pulls each trial's ``params.json``, ``result.json`` and ``error.txt``
down into the mirror, so the mirror reads like a local run directory. Checkpoints are never copied down.

Copies go through ``pyarrow.fs``, the file system layer Ray Tune itself uses, so any URI Tune accepts works here
with the same credentials (instance profile, environment, ``~/.aws``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from runstore.layout import RUN_FILES

__all__ = ["TRIAL_FILES", "is_uri", "pull_run_files", "pull_trial_files", "push_run_files", "run_uri"]

log = logging.getLogger(__name__)

#: What the mirror needs of each trial folder to be read by ``runstore.trials.load_trials``.
TRIAL_FILES = ("params.json", "result.json", "error.txt")


def is_uri(storage: str) -> bool:
    """True for ``scheme://...`` storage (``file://`` included: it is handled like any other URI)."""
    return "://" in storage


def run_uri(storage: str, name: str) -> str:
    """``<storage>/<name>``: where Tune puts the experiment of run ``name``."""
    return f"{storage.rstrip('/')}/{name}"


def _fs(uri: str):  # -> tuple[pyarrow.fs.FileSystem, str]
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def push_run_files(run_dir: Path, uri: str, names: tuple[str, ...] = RUN_FILES) -> list[str]:
    """Copy the run directory's own files (those of ``names`` that exist) to ``uri``; returns the names copied."""
    import pyarrow.fs

    fs, base = _fs(uri)
    fs.create_dir(base, recursive=True)
    local = pyarrow.fs.LocalFileSystem()
    copied = []
    for name in names:
        src = run_dir / name
        if not src.exists():
            continue
        dst = f"{base}/{name}"
        if src.is_dir():
            fs.create_dir(dst, recursive=True)
        pyarrow.fs.copy_files(str(src), dst, source_filesystem=local, destination_filesystem=fs)
        copied.append(name)
    log.info("copied %s to %s", ", ".join(copied) or "nothing", uri)
    return copied


def pull_trial_files(uri: str, run_dir: Path) -> int:
    """Copy every trial folder's ``params.json``, ``result.json`` and ``error.txt`` from ``uri`` into ``run_dir``."""
    import pyarrow.fs

    fs, base = _fs(uri)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True, recursive=False))
    count = 0
    for info in infos:
        if info.type != pyarrow.fs.FileType.Directory:
            continue
        wanted = fs.get_file_info([f"{info.path}/{f}" for f in TRIAL_FILES])
        for file in wanted:
            if file.type != pyarrow.fs.FileType.File:
                continue
            dst = run_dir / info.base_name / file.base_name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(file.path) as f:
                dst.write_bytes(f.read())
            count += 1
    return count


def pull_run_files(uri: str, run_dir: Path) -> list[str]:
    """Copy the run's own files from ``uri`` into ``run_dir`` (to resume on a machine that has no mirror).

    A mirror file newer than its copy at ``uri`` is kept: it is the live one, which the driver could not copy up
    because it was killed or the storage stopped taking writes (the Optuna study, above all).
    """
    import pyarrow.fs

    fs, base = _fs(uri)
    run_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in RUN_FILES:
        info = fs.get_file_info(f"{base}/{name}")
        if info.type == pyarrow.fs.FileType.NotFound:
            continue
        mirror = run_dir / name
        stored = info.mtime.timestamp() if info.type == pyarrow.fs.FileType.File and info.mtime else None
        if stored is not None and mirror.is_file() and mirror.stat().st_mtime > stored:
            log.info("kept %s: newer than its copy at %s", mirror, uri)
            continue
        if info.type == pyarrow.fs.FileType.Directory:
            pyarrow.fs.copy_files(
                info.path,
                str(run_dir / name),
                source_filesystem=fs,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )
        else:
            with fs.open_input_stream(info.path) as f:
                mirror.write_bytes(f.read())
        copied.append(name)
    return copied
