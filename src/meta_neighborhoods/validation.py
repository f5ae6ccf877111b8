"""Checks of user-given settings, shared by every layer: one message style, one error type.

``ConfigError`` is a ``ValueError`` (what scikit-learn and PyTorch users catch), and the command line tells
it apart from failures at run time: a bad setting is a usage error (exit status 2), not a crash (exit 1).
"""

from __future__ import annotations

import codecs
import math
import numbers
import os
import reprlib
import sys

import numpy as np


class ConfigError(ValueError):
    """A setting (parameter, option, command-line value) that is not allowed; the message names it, and so does
    ``setting`` where one setting is at fault (the command line then names the --config file that gave it)."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


class Bounded(reprlib.Repr):
    """reprlib's repr, a few items of a few levels, never the whole; an integer of more than ``maxlong`` digits by
    its size (reprlib would cut out its middle, and repr() itself fails past 4,300 digits: a TOML hex number has no
    limit)."""

    def __init__(self, maxstring: int = 40, maxlist: int = 4):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxstring = 2, maxlist, 4, maxstring

    def repr_int(self, x, level):
        digits = int(abs(x).bit_length() * math.log10(2)) + 1
        return f"<an integer of about {digits} digits>" if digits > self.maxlong else super().repr_int(x, level)


SHORT = Bounded()  # a value as messages show it


def outside_level() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller name the first frame outside this package: the
    user's ``fit`` or ``partial_fit`` (or scikit-learn's), however many of the package's own frames lie between."""
    package, frame, level = os.path.dirname(os.path.abspath(__file__)) + os.sep, sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def shown(value) -> str:
    """A value for a one-line message: its repr, cut short (and never built whole: a file's list may be huge)."""
    text = SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_option(name: str, value, allowed) -> None:
    """Reject an unknown option value with a message that lists the valid ones."""
    if value not in allowed:
        raise ConfigError(f"unknown {name} {shown(value)}; expected one of {', '.join(map(repr, allowed))}", name)


NONE = "none"  # the word for None in settings given as text (--top-k none, an ablation's values, a record's rerun)


MAX_THREADS = 1024  # more than any CPU offers; torch crashes (segmentation fault) on counts near 100,000
MAX_COUNT = 2**63 - 1  # what an int64 holds: a larger count fits no array or tensor (nor a float, past 10**308)


def check_threads(name: str, value) -> int | None:
    """A count of torch's CPU threads (None: torch's choice), at most MAX_THREADS."""
    return None if value is None else check_int(name, value, maximum=MAX_THREADS)


def check_flag(name: str, value) -> bool:
    """True or False (numpy's too), where a truthy string ("no") or a 1 would pass for one."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {shown(value)}", name)
    return bool(value)


def is_int(value) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """``value`` as an int when it is an integer from ``minimum`` to ``maximum``; otherwise a ConfigError naming it."""
    if not (is_int(value) and value >= minimum):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ConfigError(f"{name} must be {kind}, got {shown(value)}", name)
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {shown(value)}", name)
    return int(value)


def check_encoding(name: str, value) -> str:
    """The name of a text encoding Python knows (``codecs.lookup``): not a codec of bytes to bytes (base64, zlib),
    which reads no text."""
    try:
        codecs.lookup(value)
        "".encode(value)  # refuses a codec that is not a text encoding (bytes.decode lets an empty input through)
    except (LookupError, TypeError, ValueError):
        raise ConfigError(f"{name} must be a text encoding Python knows (utf-8, utf-16, latin-1, cp1252, ...), got "
                          f"{shown(value)}", name) from None
    return value


def check_seed(name: str, value, limit: int = 2**62) -> int:
    """A seed: an integer in [0, ``limit``). torch's generators take signed 64-bit seeds, and the default leaves
    room for the seeds derived from one (2 seed + 1)."""
    if not (is_int(value) and 0 <= value < limit):
        raise ConfigError(f"{name} must be an integer from 0 to {limit - 1}, got {shown(value)}", name)
    return int(value)


def is_real(value) -> bool:
    """A real number that is not a bool and that a float holds (numpy floats and integers included, NaN and
    infinity too): not an integer past float's range (10**400, which JSON and TOML files hold), which float() and
    math.isfinite refuse with an OverflowError."""
    return _number(value) and not beyond_float(value)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def beyond_float(value) -> bool:
    """A number too large for a float (10**400): not finite, though no float's infinity."""
    if not _number(value):
        return False
    try:
        float(value)
    except OverflowError:
        return True
    return False


def is_finite(value) -> bool:
    """A real number that is neither NaN nor infinite, as a float."""
    return is_real(value) and math.isfinite(value)


def is_positive(value) -> bool:
    """A finite real number above zero: a string, None, NaN, infinity or 10**400 fails here rather than later."""
    return is_finite(value) and value > 0


def check_positive(name: str, value) -> float:
    if not is_positive(value):
        raise ConfigError(f"{name} must be positive{_and_finite(value)}, got {shown(value)}", name)
    return float(value)


FLOAT32_TINY, FLOAT32_MAX = 2.0**-126, (2 - 2**-23) * 2.0**127  # the smallest normal and the largest float32


def check_float32_positive(name: str, value) -> float:
    """A positive number the network can hold: it computes in float32, where 1e39 is infinite and 1e-39 is not
    normal (a temperature of either trained to NaN)."""
    value = check_positive(name, value)
    if not FLOAT32_TINY <= value <= FLOAT32_MAX:
        raise ConfigError(f"{name} must be within float32's range ({FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}), in "
                          f"which the network computes, got {value!r}", name)
    return value


def check_non_negative(name: str, value) -> float:
    if not (is_finite(value) and value >= 0):
        raise ConfigError(f"{name} must be a non-negative number{_and_finite(value)}, got {shown(value)}", name)
    return float(value)


def _and_finite(value) -> str:
    """What a message adds for an infinite value (or one past float's range), which is of the right sign yet
    refused."""
    return " and finite" if beyond_float(value) and value > 0 or is_real(value) and value == math.inf else ""
