"""Storage faults: the run folder stopped taking writes (disk full, over quota, made read-only) mid-search.

Ray Tune writes its files from the driver and from the trial workers, so a storage fault surfaces in many shapes: an
``OSError`` in the driver, a trial's ``RayTaskError`` wrapping a worker's failed checkpoint upload, a ``TuneError``
quoting either, or SQLite's "readonly database" for the Optuna study; on an object store (``--storage s3://...``,
``gs://``) pyarrow's "AWS Error ACCESS_DENIED" or a "PERMISSION_DENIED" status, e.g. when the bucket policy or the
node's credentials change mid-search. :func:`storage_failure` recognises them all;
``search.run`` and ``search.study`` then stop with one line naming the run folder and the way back (``--resume``),
never a traceback (:func:`storage_fault`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["STORAGE_ERRNOS", "StorageFault", "storage_failure", "storage_fault"]

#: Error numbers that mean "this place takes no more writes": full, over quota, file too large, read-only, no right.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)

#: The same, as the text of an error that crossed a process boundary (Ray, pyarrow) or came from SQLite.
_TEXTS = tuple(os.strerror(e) for e in STORAGE_ERRNOS) + (
    "attempt to write a readonly database",
    "database or disk is full",
    "unable to open database file",
    # Object stores, as pyarrow's filesystems (which Ray Tune writes through) and the cloud SDKs word a refused write.
    "AWS Error ACCESS_DENIED",
    "AccessDenied",
    "PERMISSION_DENIED",
    "does not have storage.objects.create access",
)


class StorageFault(Exception):
    """The run folder could not be written; the message names it, the reason and how to continue."""


def storage_failure(exc: BaseException) -> str | None:
    """The reason (e.g. "No space left on device") if ``exc`` or an error in its chain is a storage fault, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return os.strerror(current.errno)
        text = str(current)
        for reason in _TEXTS:
            if reason in text:
                return reason
        current = current.__cause__ or current.__context__
    return None


def storage_fault(where: str | Path, reason: str, command: str, what: str) -> StorageFault:
    """The one line a run stopped by its storage ends with: the folder, the reason, the way back.

    ``command`` resumes the run (``search.run``, ``search.study``); ``what`` names it in the line (search, study)."""
    return StorageFault(
        f"the run folder {where} could not be written ({reason}); the {what} stopped and everything finished is "
        f"kept. Free space or restore write access, then continue it with: python -m {command} --resume {where}"
    )
