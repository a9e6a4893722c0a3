"""Errors of the attempt store; they join the kshot family so the CLI prints them without a traceback."""

from __future__ import annotations

from ..errors import KshotError


class AttemptError(KshotError, ValueError):
    """A field of an attempt is invalid (unknown field, status, kind, sort key, name...)."""


class AttemptExists(KshotError):
    """The attempt name is taken; names are unique."""


class AttemptNotFound(KshotError, LookupError):
    """No attempt has this id or name."""


class IllegalTransition(AttemptError):
    """A status change the attempt's life does not allow, e.g. a completed attempt back to running (409)."""
