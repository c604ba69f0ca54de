"""User errors: one line on stderr, exit code 2, no traceback.

Commands raise :class:`UserError` (or a subclass, such as the library's data-layout and missing-weights errors) for
anything the user can fix: a wrong flag, a missing file, a data folder in the wrong layout. :func:`cli` turns those
into the one-line message.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

__all__ = ["EXIT_USAGE", "UserError", "cli"]

EXIT_USAGE = 2


class UserError(Exception):
    """Something the user gave is wrong; the message says what and what was expected."""


def cli(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a ``main(argv) -> exit code`` so user errors print ``error: ...`` and return 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
