"""Request parameters and path segments, checked the same way by every handler."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from shared.fhir.dates import DateFormatError, date_range
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.http import prefer
from shared.fhir.lexical import is_digits
from shared.fhir.references import ID_PATTERN


def strict(request: Request) -> bool:
    """Whether the client asked for `Prefer: handling=strict`."""
    return prefer(request.headers, "handling") == "strict"


def search_pairs(
    request: Request, extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """The search parameters of the query string (plus a form body's)."""
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    return pairs + (extra or [])


def instant_param(raw: str | None, name: str) -> Any:
    """The start of a date parameter such as `_since`; 400 when it is not a FHIR date."""
    if raw is None:
        return None
    try:
        return date_range(raw)[0]
    except DateFormatError as exc:
        raise bad_request(f"{name}: {exc}", [name]) from None


def int_param(request: Request, name: str, default: int, maximum: int) -> int:
    """A whole-number query parameter, capped at `maximum`."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not is_digits(raw, 12):
        raise bad_request(f"'{name}' must be a whole number, not '{raw}'", [name])
    return min(int(raw), maximum)


def known_id(res_type: str, res_id: str) -> str:
    """An id in a read URL; one that cannot exist in FHIR is simply not found."""
    if res_id.startswith("$"):
        # Declared operations have routes of their own; this one is not served here.
        raise FHIRError(
            404,
            f"The operation {res_id[:64]} is not served on {res_type} at this level "
            "(the CapabilityStatement lists the operations served)",
            code="not-supported",
        )
    if not ID_PATTERN.fullmatch(res_id):
        raise FHIRError(404, f"{res_type}/{res_id[:80]} is not known", code="not-found")
    return res_id


def new_id(res_type: str, res_id: str) -> str:
    """An id a client asks us to write: FHIR ids are 1-64 of A-Z a-z 0-9 - ."""
    if not ID_PATTERN.fullmatch(res_id):
        raise bad_request(
            f"'{res_id[:80]}' is not a valid FHIR id (1-64 of A-Z, a-z, 0-9, '-', '.')",
            [f"{res_type}.id"],
        )
    return res_id


def version_id(res_type: str, res_id: str, vid: str) -> str:
    """A version in a vread URL; one that cannot exist is not found."""
    if not is_digits(vid, 12):
        raise FHIRError(
            404, f"{res_type}/{res_id}/_history/{vid[:20]} is not known", code="not-found"
        )
    return vid
