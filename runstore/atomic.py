"""Atomic writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file goes to a temporary sibling first, is flushed to disk, then renamed over the target (``os.replace`` is
atomic within a file system). A whole folder is written as a temporary sibling folder and renamed into place.
A write that fails (disk full, a file size limit, no permission) leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["OverwriteRefused", "atomic_dir", "write_bytes", "write_json", "write_text"]


class OverwriteRefused(Exception):
    """The target exists and is not ours to replace; the message names it and says how to force it."""


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + fsync + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """``json.dumps(obj, **dumps)`` plus a final newline, written atomically. NaN is refused (it is not JSON)."""
    dumps.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, allow_nan=False, **dumps) + "\n")


@contextlib.contextmanager
def atomic_dir(
    target: str | Path, *, force: bool = False, ours: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it is renamed to ``target``.

    An existing ``target`` is refused (:class:`OverwriteRefused`) unless ``force`` is given or ``ours(target)`` says
    it is one of ours to replace; with either, the old folder is moved aside and removed only after the new one is in
    place. On an error the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and not force and not (ours is not None and ours(target)):
        raise OverwriteRefused(f"{target} already exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old.{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
