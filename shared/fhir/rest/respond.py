"""Responses to interactions: headers from the stored version, and `Prefer: return=`."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from shared.fhir.dates import http_date
from shared.fhir.errors import issue, operation_outcome
from shared.fhir.http import fhir_response, prefer
from shared.fhir.interactions import Result


def resource_headers(result: Result, base: str) -> dict[str, str]:
    """ETag, Last-Modified and (for creates and updates) Location of a stored version."""
    stored = result.stored
    if stored is None:
        return {}
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if result.status == 201 or stored.method in ("PUT", "PATCH"):
        headers["Location"] = f"{base}/{stored.location}"
    return headers


def respond(request: Request, result: Result, base: str) -> Response:
    """The interaction's answer, shaped by the client's `Prefer: return=`."""
    headers = resource_headers(result, base)
    stored = result.stored
    if stored is None:
        return fhir_response(result.body, result.status, headers)
    wanted = prefer(request.headers, "return")
    if request.method in ("POST", "PUT", "PATCH") and wanted == "minimal":
        return fhir_response(None, result.status, headers)
    if request.method in ("POST", "PUT", "PATCH") and wanted == "operationoutcome":
        outcome = operation_outcome(
            [
                issue(
                    "information",
                    "informational",
                    f"{stored.type}/{stored.id} stored as version {stored.version_id}",
                )
            ]
        )
        return fhir_response(outcome, result.status, headers)
    return fhir_response(stored.resource, result.status, headers)
