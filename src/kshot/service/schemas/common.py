"""Shared field types of the request and response schemas."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

# The store's rule; all digits would be ambiguous with an id in /attempts/{id_or_name}.
NAME_PATTERN = r"^(?!\d+$)[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
NAME_RE = re.compile(NAME_PATTERN)


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            "a name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, and not all digits"
        )
    return value


AttemptName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="Unique name: letters, digits, '.', '_', '-'; not all digits.",
        examples=["reptile-lr1e-3"],
        # In the schema for clients and fuzzers; checked by _check_name (pydantic's regex engine has no look-ahead).
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
    AfterValidator(_check_name),
]


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite metric is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value
