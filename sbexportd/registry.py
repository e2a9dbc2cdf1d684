"""Tables of things sbexportd looks up by name: each backend's op converters, the
shape rules, the torch code generator's emitters, activations, export targets,
backends, algorithm adapters, the daemon's methods.

One helper for all of them, as tf2onnx's handler decorators and onnx2torch's
converter registry: `register(name)` is a decorator, a name registered twice is an
error at import (never a silent overwrite), and a lookup of an unknown name raises
the table's error class, naming the known keys (a typed sbexportd error where a
user can ask for the name: a backend, a target, an activation)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class DuplicateName(ValueError):
    """A name registered twice in one table: a bug, found when the module is imported."""


class UnknownName(LookupError):
    """A name no entry has (the default error of a table no user names directly)."""


class Registry(Mapping[str, T], Generic[T]):
    """An ordered name -> entry table, filled by `register`/`add`.

    kind: what an entry is ("torch converter", "backend"), for messages.
    error: the exception class a lookup of an unknown name raises, called with the
    message (sbexportd's errors take (message, path=None)).
    entries: first (name, entry) pairs, each `add`ed (pairs, not a dict literal,
    whose repeated keys Python collapses before a table could see them)."""

    def __init__(self, kind: str, error: Callable[[str], Exception] = UnknownName,
                 entries: Iterable[tuple[str, T]] = ()):
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.add(name, entry)

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise DuplicateName(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: the function (or class) is the entry of each of `names`."""
        if not names:
            raise TypeError("register() needs at least one name")

        def deco(entry: T) -> T:
            for name in names:
                self.add(name, entry)
            return entry
        return deco

    def unknown(self, name: object) -> Exception:
        """The error for a name no entry has."""
        return self.error(f"unknown {self.kind} {name!r:.60}; choose one of {', '.join(self._entries)}")

    def missing(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names) - set(self._entries))

    def require(self, names: Iterable[str]) -> None:
        """Raise the table's error when any of `names` has no entry (before any work
        that would stop half-way at the first one)."""
        missing = self.missing(names)
        if missing:
            raise self.error(f"no {self.kind} for {', '.join(map(repr, missing))}; there are: "
                             f"{', '.join(self._entries)}")

    # -- Mapping -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a request
            raise self.unknown(name) from None

    def __setitem__(self, name: str, entry: T) -> None:
        """An explicit replacement (tests swap an entry in and out with pytest's
        monkeypatch.setitem); registering goes through `add`/`register`, which refuse one."""
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def get(self, name, default=None):
        try:
            return self._entries.get(name, default)
        except TypeError:
            return default

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
