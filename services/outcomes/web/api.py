"""The pages read the service's own FHIR API in-process with the clinician's access token, so
the API's scopes, practice isolation and audit trail apply to every page as they stand."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from services.outcomes.web.sessions import WebSession

FHIR_JSON = "application/fhir+json"
Params = dict[str, str] | list[tuple[str, str]] | None


class ApiRefused(Exception):
    """The API answered with an error: its status and the OperationOutcome's text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class FHIRApi:
    """GETs on the app's own FHIR base, as the signed-in clinician."""

    def __init__(self, app: FastAPI, session: WebSession, client: str | None) -> None:
        base = app.state.fhir.settings.base_path
        # The browser's address, so the audit trail names where the clinician was.
        transport = httpx.ASGITransport(app=app, client=(client or "127.0.0.1", 0))
        self.http = httpx.AsyncClient(
            transport=transport,
            base_url=f"http://outcomes.internal{base}",
            headers={"Authorization": f"Bearer {session.access_token}"},
            timeout=30,
        )

    async def __aenter__(self) -> FHIRApi:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    async def raw(self, path: str, params: Params = None, *, accept: str
                  ) -> httpx.Response:  # fmt: skip
        """The API's answer, whatever its status (charts pass images through)."""
        return await self.http.get(path, params=params, headers={"Accept": accept})

    async def json(self, path: str, params: Params = None) -> dict[str, Any]:
        """The resource the API returns; ApiRefused for any error status."""
        response = await self.raw(path, params, accept=FHIR_JSON)
        if response.status_code >= 400:
            raise ApiRefused(response.status_code, _diagnostics(response))
        body = response.json()
        return body if isinstance(body, dict) else {}


def _diagnostics(response: httpx.Response) -> str:
    try:
        issues = response.json().get("issue", [])
        return "; ".join(str(i.get("diagnostics", "")) for i in issues if i.get("diagnostics"))
    except (ValueError, AttributeError):
        return ""
