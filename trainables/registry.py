"""``Registry``: name -> entry lookup with one "unknown X; valid Xs: ..." error, shared by models, spaces, profiles.

Like timm's model registry and Ray Tune's scheduler table: entries register under a name, a lookup of an unknown
name fails with the name and the valid ones, never a bare ``KeyError``. Torch-free, so anything may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name. ``kind`` names them in errors: ``Registry("model")`` -> "unknown model 'x'"."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name registered twice is an error (it would shadow the first)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``; ``ValueError`` naming it and listing the valid names if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.list())}") from None

    def list(self) -> list[str]:
        """Sorted names of every entry."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)
