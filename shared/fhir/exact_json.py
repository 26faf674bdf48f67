"""JSON text of resources with exact decimals: FHIR keeps a decimal's precision (1.50 is not 1.5).

Every place a resource becomes JSON text or is read back from it uses `dumps` / `loads` here, so
a number with a fraction or an exponent is written back as the very text it was read from: a
`Decimal` keeping that text, or a float whose shortest form is that text. Integers stay `int`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

# FHIR decimals have no limit, but a magnitude beyond 1e308 or below 1e-308 becomes infinity
# or zero in every client that parses JSON numbers as doubles, so it is refused at the door.
MAX_ADJUSTED_EXPONENT = 308


class ExactDecimal(Decimal):
    """A decimal that remembers the JSON text it was read from (`1.0e2` stays `1.0e2`)."""

    __slots__ = ("text",)
    text: str

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Decimal would rebuild a subclass from its own str(), losing the text.
        return decimal_from_text, (self.text,)


def decimal_from_text(text: str) -> ExactDecimal:
    """The `parse_float` hook: the JSON scanner hands over the number's text exactly."""
    number = ExactDecimal(text)
    number.text = text
    return number


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=decimal_from_text, parse_constant=_refuse_constant)


def loads(content: str | bytes) -> Any:
    """Parse stored or peer JSON; raises ValueError (or RecursionError) when it is not JSON.

    Non-integer numbers come back as Decimal, or as float where orjson writes the float back
    as exactly the text read (72.5, not 1.50): most stored text is orjson's own output, so
    orjson parses it and one orjson write checks nothing was lost; else the exact parse runs.
    """
    raw = content.encode() if isinstance(content, str) else content
    try:
        parsed = orjson.loads(raw)
        if orjson.dumps(parsed) == raw:
            return parsed
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass  # e.g. an integer beyond 64 bits: the exact parse says what is wrong, if anything
    return _DECODER.decode(raw.decode("utf-8"))


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = getattr(value, "text", None)
        if text is not None:
            return orjson.Fragment(text)
        if value.is_finite():
            return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """JSON bytes, decimals written as the text they were read from."""
    return orjson.dumps(value, default=_default)


def dumps_text(value: Any) -> str:
    """JSON as a str (the form stored in the database)."""
    return orjson.dumps(value, default=_default).decode()


def out_of_range(number: Decimal) -> str | None:
    """'too large' or 'too small' when a non-zero number is beyond 1e±308, else None."""
    if not number.is_finite():
        return "too large"
    if not number:
        return None
    adjusted = number.adjusted()
    if adjusted > MAX_ADJUSTED_EXPONENT:
        return "too large"
    if adjusted < -MAX_ADJUSTED_EXPONENT:
        return "too small"
    return None
