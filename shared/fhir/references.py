"""Parse FHIR references (`id`, `Type/id`, absolute URLs) into target type and id."""

from __future__ import annotations

import re

_TYPE_ID = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-\.]{1,64})(?:/_history/[^/]+)?/?$"
)
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")


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
