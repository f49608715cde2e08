"""The base of digest's state enums: delivery states (:mod:`digest.delivery.ledger`),
subscriber statuses (:mod:`digest.audience.status`) and run outcomes
(:mod:`digest.schedule.runs`).

A member *is* its value: a ``str`` equal to it, hashed like it, written as it in
f-strings, JSON and database parameters, so the stores keep the same text and a value
read back from a row finds its member's entry in a table. (``enum.StrEnum`` does the
same from Python 3.11; digest also runs on 3.10.)
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    """A state whose members are their values (``State.X == "x"``, ``f"{State.X}" == "x"``)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


__all__ = ["State"]
