"""The programme's session-type CodeSystem: a valid R4 resource under the canonical base."""

from __future__ import annotations

from services.scheduling.session_types import session_type_codes, session_types
from services.scheduling.settings import SchedulingSettings
from shared.fhir.validation import validate_resource


def test_the_session_types_are_a_valid_code_system_under_the_canonical_base():
    base = SchedulingSettings().canonical_base
    code_system = session_types(base)
    validate_resource(code_system, "CodeSystem")
    assert code_system["url"] == f"{base}/CodeSystem/session-type"
    assert session_type_codes(base) == ["preparation", "dosing", "emdr", "integration"]
    assert code_system["count"] == len(code_system["concept"])
    assert all(c["display"] and c["definition"] for c in code_system["concept"])


def test_another_base_moves_the_url():
    assert session_types("https://example.test/fhir/")["url"] == (
        "https://example.test/fhir/CodeSystem/session-type"
    )
