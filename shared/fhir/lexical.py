"""The lexical forms of FHIR names the code checks in many places, defined once."""

from __future__ import annotations

import re

# A resource type name (`Patient`, `MedicationAdministration`).
TYPE_NAME = r"[A-Z][A-Za-z]{0,63}"
# A resource id: 1-64 of A-Z a-z 0-9 - .
ID = r"[A-Za-z0-9\-.]{1,64}"
TYPE_PATTERN = re.compile(TYPE_NAME)
ID_PATTERN = re.compile(ID)


def is_type_name(text: str) -> bool:
    """Whether `text` has the form of a resource type name."""
    return TYPE_PATTERN.fullmatch(text) is not None


def is_digits(text: str, max_length: int | None = None) -> bool:
    """ASCII digits only (str.isdigit alone accepts other scripts' digits), optionally short."""
    return text.isascii() and text.isdigit() and (max_length is None or len(text) <= max_length)
