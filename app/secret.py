"""A token value that cannot be printed by accident."""

from __future__ import annotations

import hashlib


def fingerprint(raw: str) -> str:
    """Short SHA-256 fingerprint used in the journal instead of the value."""
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:12]


class SecretValue:
    """Holds a secret; ``str``/``repr``/``format`` are masked and it refuses pickling.

    The only way to the value is :meth:`reveal`, so every use is greppable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretValue holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return f"SecretValue(<{self.fingerprint}>)"

    def __str__(self) -> str:
        return "********"

    def __format__(self, spec: str) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str:
        raise TypeError("SecretValue cannot be pickled")
