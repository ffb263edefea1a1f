"""A name -> entry table with errors that list what is valid: one per role (critics, problem sources, backends,
algorithms), read by every stage, so a new implementation is one class plus one entry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "RegistryError"]

T = TypeVar("T")


class RegistryError(KeyError, ValueError):
    """An unknown name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, role: str):
        self.role = role
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        if name in self._entries and not replace:
            raise ValueError(f"{self.role} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.role} {name!r}; valid: {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
