"""The kshot exception family.

Every error a user can cause derives from :class:`KshotError`; the command line prints its message
and exits with status 2 instead of a traceback. Messages name the file, field or value at fault and
say what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KshotError(Exception):
    """Base class of every error caused by user input or configuration."""


class ConfigError(KshotError):
    """A config or params file, or an override, is invalid."""


class DataError(KshotError):
    """A data source cannot be read or does not fit the few-shot protocol."""


class ModelError(KshotError):
    """A model cannot be loaded, saved or used as asked."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> str:
    """Message for a value outside a closed set: names the value, the closest match and the choices."""
    choices = list(choices)
    return f"Unknown {kind} '{value}'.{did_you_mean(str(value), choices)} Choose from: {', '.join(choices)}."
