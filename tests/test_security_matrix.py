"""Every route of every service against every kind of caller, generated from the app itself.

A route added later without a declared scope fails here: the walk finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from shared.auth.middleware import is_public, public_paths
from shared.auth.needs import need_of
from tests.auth_support import AUDIENCE, mint, rsa_key
from tests.fhir_asserts import assert_outcome

SERVICES = ("intake", "scheduling", "outcomes")
NO_SCOPE = "openid fhirUser"  # a token with no resource scope at all

CALLERS: dict[str, tuple[dict[str, str], int]] = {}


def _callers() -> dict[str, dict[str, str]]:
    """Authorization headers of each kind of caller the matrix tries."""
    return {
        "no token": {},
        "bad signature": {"Authorization": f"Bearer {mint(key=rsa_key('impostor'))}"},
        "expired": {"Authorization": f"Bearer {mint(lifetime=-3600)}"},
        "wrong audience": {"Authorization": f"Bearer {mint(aud='https://other.test/fhir')}"},
        "wrong issuer": {"Authorization": f"Bearer {mint(iss='https://evil.test')}"},
        "insufficient scope": {"Authorization": f"Bearer {mint(scope=NO_SCOPE)}"},
        "correct": {"Authorization": f"Bearer {mint()}"},
    }


def _flat(routes: list[Any]) -> list[Any]:
    """Routes, with included routers opened up (FastAPI keeps those as one entry)."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found.extend(_flat(inner.routes) if inner is not None else [route])
    return found


def _routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    found = []
    for route in _flat(app.routes):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                found.append((method, route.path, route))
    return found


def _concrete(path: str) -> str:
    return path.replace("{id}", "matrix-1").replace("{vid}", "1")


def _body(method: str, path: str) -> Any:
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if method == "PATCH":
        return []
    if path in ("/fhir", "/fhir/"):
        entry = {"request": {"method": "GET", "url": "Patient?_count=1"}}
        return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    res_type = path.split("/")[2] if path.count("/") >= 2 else ""
    if not res_type or res_type.startswith("$"):
        return {"resourceType": "Parameters"}
    return {"resourceType": res_type, "id": "matrix-1"}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_declares_what_it_needs(
    service: str, service_client: Callable[..., httpx.AsyncClient]
):
    client = service_client(service)
    app = client._transport.app  # type: ignore[attr-defined]
    public = public_paths("/fhir")
    undeclared = [
        f"{method} {path}"
        for method, path, route in _routes(app)
        if need_of(route) is None and not is_public(path, public)
    ]
    assert undeclared == []
    # Every operation names its scope (the OperationDefinition says it too).
    registry = app.state.fhir.registry
    ops = list(registry.operations) + [
        op for d in registry.resources.values() for op in d.operations
    ]
    assert all(op.scope for op in ops), [op.name for op in ops if not op.scope]
    await client.aclose()


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_answers_each_caller_as_it_should(
    service: str, service_client: Callable[..., httpx.AsyncClient]
):
    client = service_client(service)
    app = client._transport.app  # type: ignore[attr-defined]
    callers = _callers()
    public = public_paths("/fhir")
    checked = 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as bare:
        for method, path, route in _routes(app):
            if not path.startswith("/fhir") and route.path != "/status/events":
                continue
            url = _concrete(path)
            body = _body(method, path)
            for caller, headers in callers.items():
                kwargs: dict[str, Any] = {"headers": {**headers}}
                if body is not None:
                    content_type = (
                        "application/json-patch+json"
                        if method == "PATCH"
                        else "application/fhir+json"
                    )
                    kwargs["json"] = body
                    kwargs["headers"]["Content-Type"] = content_type
                response = await bare.request(method, url, **kwargs)
                status = response.status_code
                where = f"{caller}: {method} {url} -> {status} {response.text[:200]}"
                assert status < 500, where
                if is_public(path, public) or caller == "correct":
                    assert status not in (401, 403), where
                elif caller == "insufficient scope":
                    # A replica's write is refused as such before any scope is looked at.
                    if status != 405:
                        assert_outcome(response, 403, "forbidden")
                        assert "system/" in response.json()["issue"][0]["diagnostics"], where
                else:
                    assert_outcome(response, 401, "login")
                    challenge = response.headers["www-authenticate"]
                    assert challenge.startswith("Bearer"), where
                    if caller != "no token":
                        assert 'error="invalid_token"' in challenge, where
                checked += 1
    assert checked > 100  # the walk really covered the service
    await client.aclose()


def test_the_suite_tokens_name_the_configured_audience():
    assert AUDIENCE.endswith("/fhir")
