"""Parse FHIR references (`id`, `Type/id`, absolute URLs) into target type and id."""

from __future__ import annotations

import re

from shared.fhir.lexical import ID, ID_PATTERN, TYPE_NAME

_TYPE_ID = re.compile(rf"(?:^|/)(?P<type>{TYPE_NAME})/(?P<id>{ID})(?:/_history/[^/]+)?/?$")

__all__ = ["ID_PATTERN", "parse_reference"]


def parse_reference(reference: str) -> tuple[str | None, str | None]:
    """Return (type, id) of a literal reference; (None, None) when it names no resource."""
    if not reference or reference.startswith(("#", "urn:")):
        return None, None
    match = _TYPE_ID.search(reference)
    if match:
        return match.group("type"), match.group("id")
    if ID_PATTERN.match(reference):
        return None, reference
    return None, None
