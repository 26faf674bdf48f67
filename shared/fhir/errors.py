"""FHIR errors: one exception type and its OperationOutcome rendering."""

from __future__ import annotations

from typing import Any


class FHIRError(Exception):
    """A client-visible failure, rendered as an OperationOutcome with an HTTP status."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str = "processing",
        expression: list[str] | None = None,
        severity: str = "error",
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.headers = headers or {}
        self.issues = issues or [issue(severity, code, diagnostics, expression)]

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource describing this error."""
        return operation_outcome(self.issues)


def issue(
    severity: str, code: str, diagnostics: str, expression: list[str] | None = None
) -> dict[str, Any]:
    """One OperationOutcome.issue entry; `expression` names the field at fault."""
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = expression
    return entry


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap issues in an OperationOutcome resource."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def bad_request(diagnostics: str, expression: list[str] | None = None) -> FHIRError:
    return FHIRError(400, diagnostics, code="invalid", expression=expression)


def invalid(diagnostics: str, expression: list[str] | None = None) -> FHIRError:
    return FHIRError(422, diagnostics, code="invalid", expression=expression)


def not_found(diagnostics: str) -> FHIRError:
    return FHIRError(404, diagnostics, code="not-found")


def gone(diagnostics: str) -> FHIRError:
    return FHIRError(410, diagnostics, code="deleted")


class Deleted(FHIRError):
    """The resource is deleted: the store states at which version; the HTTP answer (410 with
    the deletion's ETag, so a client can tell which version it saw) follows from that."""

    def __init__(self, res_type: str, res_id: str, version_id: int) -> None:
        super().__init__(410, f"{res_type}/{res_id} was deleted", code="deleted")
        self.version_id = version_id
        self.headers = {"ETag": f'W/"{version_id}"'}


def precondition_failed(diagnostics: str) -> FHIRError:
    return FHIRError(412, diagnostics, code="conflict")


def statement_stopped(timeout_ms: int, reason: str, shutting_down: bool) -> FHIRError:
    """The error of a search stopped by the statement time-out (400) or by a shutdown (503)."""
    if shutting_down:
        return FHIRError(
            503, "The service is stopping; retry", code="transient", headers={"Retry-After": "1"}
        )
    return FHIRError(
        400,
        f"The query ran longer than the statement time-out of {timeout_ms} ms "
        f"(STATEMENT_TIMEOUT_MS; {reason}): narrow the search or page through it",
        code="too-costly",
    )
