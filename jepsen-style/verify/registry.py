"""One registry style for the suite's pluggable parts: backends, nemeses and workloads.

A :class:`Registry` maps a name (what ``--backend``, ``--nemesis`` and ``--workload`` accept) to a
``"module:attribute"`` target, imported only when the entry is loaded, and a one-line help. Each
kind declares its registry once, in its package's ``__init__`` (:data:`coterie.verify.backends.BACKENDS`,
:data:`coterie.verify.nemesis.NEMESES`, :data:`coterie.verify.workloads.WORKLOADS`), and the CLI, the
runner and ``scripts/jepsen-all`` read names and help from there: adding a workload is one entry
plus its module. Declaring a registry imports nothing but this module, so ``coterie verify --help``
stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str
    """``"module:attribute"``; the module may be relative to the registry's package, the
    attribute may be dotted (``"Class.method"``)."""
    help: str


class Registry(Generic[T]):
    """Named, lazily imported entries of one ``kind`` (``"backend"``, ``"nemesis"``, ...).

    ``entries`` maps name -> (target, one-line help), in the order names are listed. ``check``, if
    given, is applied to every loaded object (a :class:`TypeError` if it returns False), so a
    target of the wrong kind fails where it is loaded, naming the entry.
    """

    def __init__(self, kind: str, package: str, entries: Mapping[str, tuple[str, str]], *,
                 check: Callable[[Any], bool] | None = None) -> None:
        self.kind = kind
        self.package = package
        self._check = check
        self._entries: dict[str, Entry] = {}
        for name, (target, help_) in entries.items():
            module, sep, attr = target.partition(":")
            if not (module and sep and attr):
                raise ValueError(f"{kind} {name!r}: target must be 'module:attribute', got {target!r}")
            self._entries[name] = Entry(name, target, help_)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def validate(self, name: str) -> str:
        """``name`` if registered, else a :class:`ValueError` naming the kind and the choices."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}")
        return name

    def help(self, name: str) -> str:
        return self._entries[self.validate(name)].help

    def load(self, name: str) -> T:
        """Import the entry's module and return its attribute (see :meth:`validate` for unknown names)."""
        entry = self._entries[self.validate(name)]
        module, _, attr = entry.target.partition(":")
        obj: Any = importlib.import_module(module, self.package)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if self._check is not None and not self._check(obj):
            raise TypeError(f"{self.kind} {name!r}: {entry.target} is not a {self.kind} ({obj!r})")
        return cast(T, obj)

    def describe(self, sep: str = "; ") -> str:
        """``name: help`` for every entry, joined by ``sep`` (for ``--help`` texts)."""
        return sep.join(f"{e.name}: {e.help}" for e in self._entries.values())
