"""Checks of user-given settings, shared by every layer: one message style, one error type.

``ConfigError`` is a ``ValueError`` (what scikit-learn and PyTorch users catch), and the command line tells
it apart from failures at run time: a bad setting is a usage error (exit status 2), not a crash (exit 1).
"""

from __future__ import annotations

import math
import numbers


class ConfigError(ValueError):
    """A setting (parameter, option, command-line value) that is not allowed; the message names it, and so does
    ``setting`` where one setting is at fault (the command line then names the --config file that gave it)."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def check_option(name: str, value, allowed) -> None:
    """Reject an unknown option value with a message that lists the valid ones."""
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, allowed))}", name)


NONE = "none"  # the word for None in settings given as text (--top-k none, an ablation's values, a record's rerun)


MAX_THREADS = 1024  # more than any CPU offers; torch crashes (segmentation fault) on counts near 100,000


def check_threads(name: str, value) -> int | None:
    """A count of torch's CPU threads (None: torch's choice), at most MAX_THREADS."""
    if value is None:
        return None
    if check_int(name, value) > MAX_THREADS:
        raise ConfigError(f"{name} must be at most {MAX_THREADS}, got {value}", name)
    return int(value)


def is_int(value) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer >= ``minimum``; otherwise a ConfigError naming it."""
    if not (is_int(value) and value >= minimum):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ConfigError(f"{name} must be {kind}, got {value!r}", name)
    return int(value)


def check_seed(name: str, value, limit: int = 2**62) -> int:
    """A seed: an integer in [0, ``limit``). torch's generators take signed 64-bit seeds, and the default leaves
    room for the seeds derived from one (2 seed + 1)."""
    if not (is_int(value) and 0 <= value < limit):
        raise ConfigError(f"{name} must be an integer from 0 to {limit - 1}, got {value!r:.40}", name)
    return int(value)


def is_real(value) -> bool:
    """A real number that is not a bool (numpy floats and integers included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_positive(value) -> bool:
    """A finite real number above zero: a string, None, NaN or infinity fails here rather than later."""
    return is_real(value) and 0 < value < math.inf


def check_positive(name: str, value) -> float:
    if not is_positive(value):
        raise ConfigError(f"{name} must be positive{_and_finite(value)}, got {value!r}", name)
    return float(value)


def check_non_negative(name: str, value) -> float:
    if not (is_real(value) and 0 <= value < math.inf):
        raise ConfigError(f"{name} must be a non-negative number{_and_finite(value)}, got {value!r}", name)
    return float(value)


def _and_finite(value) -> str:
    """What a message adds for an infinite value, which is of the right sign yet refused."""
    return " and finite" if is_real(value) and value == math.inf else ""
