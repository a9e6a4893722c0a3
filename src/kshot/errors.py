"""The kshot exception family.

Every error a user can cause derives from :class:`KshotError`; the command line prints its message
and exits with status 2 instead of a traceback. Messages name the file, field or value at fault and
say what to do.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable


class KshotError(Exception):
    """Base class of every error caused by user input or configuration."""


class ConfigError(KshotError):
    """A config or params file, or an override, is invalid."""


class DataError(KshotError):
    """A data source cannot be read or does not fit the few-shot protocol."""


class ModelError(KshotError):
    """A model cannot be loaded, saved or used as asked."""


# Longer values are never "close" to a key or choice; comparing them would only cost time.
_CLOSE_MATCH_LIMIT = 200


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters: an error never echoes a huge input.

    A cut repr ends in '…' and says how long the original was (characters of a string, items of a
    container). Only as much of the value is rendered as the cut needs, so a 1 MB string or a list of
    a million items costs no more than a short one.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length():,} bits"  # its repr is slow, and refused past 4300 digits
    if isinstance(value, str):
        text, size = repr(value[: limit + 1]), _count(len(value), "character")
        cut = len(value) > limit or len(text) > limit
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        text, size = _short_repr(value, limit), _count(len(value), "item")
        cut = len(text) > limit or "..." in text
    else:
        text = repr(value)
        size, cut = _count(len(text), "character"), len(text) > limit
    return f"{text[: max(limit - 1, 1)]}… ({size})" if cut else text


def _count(n: int, unit: str) -> str:
    return f"{n:,} {unit}{'' if n == 1 else 's'}"


def _short_repr(value: object, limit: int) -> str:
    """A container's repr rendered only as far as ``limit`` characters can show ('...' where it stopped)."""
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = max(limit // 2, 1)
    return r.repr(value)


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest choice, or an empty string."""
    value = str(value)
    if len(value) > _CLOSE_MATCH_LIMIT:
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> str:
    """Message for a value outside a closed set: names the value, the closest match and the choices."""
    choices = list(choices)
    return f"Unknown {kind} {shown(str(value))}.{did_you_mean(str(value), choices)} Choose from: {', '.join(choices)}."
