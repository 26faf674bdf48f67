"""Assertions on FHIR responses shared by the test modules."""

from __future__ import annotations

from typing import Any

import httpx


def assert_outcome(
    response: httpx.Response, status: int, code: str, *, expression: bool = False
) -> dict[str, Any]:
    """The response is `status` with an OperationOutcome whose first issue has `code`."""
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue["diagnostics"]
    if expression:
        assert issue["expression"]
    return issue
