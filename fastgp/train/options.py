"""The option machinery of the trainer's configuration: ``Option``, ``ConfigError`` and the value checks.

Kept apart from ``config`` (the schema, YAML loading, validation) and ``regularizers`` (the
registry, whose classes declare their own options) so that both import it and neither imports
the other for it: ``config`` builds its schema from ``regularizers``, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


class ConfigError(ValueError):
    """A bad configuration value or key; the message names the key."""


@dataclass(frozen=True)
class Option:
    """One configuration option: its default (whose type is the option's type), help, value check."""

    default: object
    help: str
    check: Callable[[object], str | None] | None = None  # returns an error message or None


# Value checks: each returns None for a good value, else the message's tail after "key: ".


def choice(options):
    def check(value):
        if value not in options:
            return f"must be one of {', '.join(repr(o) for o in options)}; got {value!r}"
        return None

    return check


def at_least(minimum):
    def check(value):
        return None if value >= minimum else f"must be >= {minimum}, got {value}"

    return check


def positive(value):
    return None if value > 0 else f"must be > 0, got {value}"


def unit_interval(value):
    return None if 0.0 <= value <= 1.0 else f"must be in [0, 1], got {value}"


def open_unit_interval(value):
    """[0, 1): a decay or a momentum."""
    return None if 0.0 <= value < 1.0 else f"must be in [0, 1), got {value}"
