"""A service's own client (SMART Backend Services) against the real dev issuer process:
discovery, the token cache, renewal on expiry and on a 401, and the event runtime's use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from shared.auth.client_credentials import ClientCredentials, TokenError
from tests.conftest import SERVICES, make_settings
from tests.issuer_support import AUDIENCES, Issuer, running_issuer
from tooling.dev_issuer import client_key_file


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("dev-auth") / "state") as running:
        yield running


def claims(issuer: Issuer, token: str) -> dict[str, Any]:
    """The token's claims, its signature checked against the served JWKS."""
    key = jwt.PyJWKSet.from_dict(issuer.jwks())[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCES[1])


def client(server: Issuer, client_id: str = "kemdr-intake", **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(client_id, server.key(client_id), **{"issuer": server.url, **kwargs})


def test_the_token_endpoint_is_discovered_and_the_token_cached(issuer: Issuer):
    credentials = client(issuer)
    first = credentials.token()
    assert credentials.token_endpoint == issuer.token_endpoint
    # Every token has its own jti: the same string means it came from the cache.
    assert credentials.token() == first
    granted = claims(issuer, first)
    assert (granted["client_id"], granted["scope"], granted["practice"]) == (
        "kemdr-intake",
        "system/*.rs",
        "*",
    )


async def test_the_async_flow_uses_a_configured_token_endpoint_without_discovery(issuer: Issuer):
    # Nothing listens at this issuer URL: only the configured endpoint can have answered.
    credentials = client(issuer, issuer="http://127.0.0.1:9", token_endpoint=issuer.token_endpoint)
    first = await credentials.atoken()
    assert await credentials.atoken() == first
    assert claims(issuer, first)["sub"] == "kemdr-intake"


def test_a_token_is_renewed_when_it_nears_expiry(tmp_path: Path):
    with running_issuer(tmp_path / "state", "--token-lifetime", "2") as short:
        credentials = client(short)
        first = credentials.token()
        assert credentials.token() == first
        time.sleep(1.2)  # renewed at half a short lifetime
        assert credentials.token() != first


def test_a_refusal_is_a_token_error(issuer: Issuer):
    with pytest.raises(TokenError, match="none of the requested"):
        client(issuer, scope="system/Patient.c").token()
    with pytest.raises(TokenError, match="could not be reached"):
        client(issuer, issuer="http://127.0.0.1:9").token()


def _resource_server(refuse: Callable[[str], bool], seen: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        seen.append(token)
        return httpx.Response(401 if refuse(token) else 200)

    return httpx.MockTransport(handle)


async def test_a_401_renews_the_token_and_retries_once(issuer: Issuer):
    credentials = client(issuer)
    stale = await credentials.atoken()
    seen: list[str] = []
    transport = _resource_server(lambda token: token == stale, seen)
    async with httpx.AsyncClient(auth=credentials, transport=transport) as http:
        assert (await http.get("http://peer/fhir/Patient")).status_code == 200
    assert seen[0] == stale and seen[1] != stale and len(seen) == 2
    # A server that refuses every token gets exactly one retry.
    seen.clear()
    transport = _resource_server(lambda _token: True, seen)
    with httpx.Client(auth=credentials, transport=transport) as http:
        assert http.get("http://peer/fhir/Patient").status_code == 401
    assert len(seen) == 2


def test_from_settings_needs_a_client_id(issuer: Issuer):
    assert ClientCredentials.from_settings(make_settings("intake", "sqlite://")) is None
    with pytest.raises(ValueError, match="auth_client_key_file"):
        ClientCredentials.from_settings(make_settings("intake", "sqlite://", auth_client_id="x"))


async def test_the_event_runtime_calls_peers_with_the_service_token(
    issuer: Issuer, database_url: str
):
    settings = make_settings(
        "scheduling",
        database_url,
        auth_issuer=issuer.url,
        auth_client_id="kemdr-scheduling",
        auth_client_key_file=str(client_key_file(issuer.directory, "kemdr-scheduling")),
    )
    app = SERVICES["scheduling"][1](settings)
    runtime = app.state.events
    try:
        assert isinstance(runtime.peer_auth, ClientCredentials)
        seen: list[str] = []
        runtime.http_transport = _resource_server(lambda _token: False, seen)
        async with runtime.http_client() as http:
            await http.get(f"{runtime.owner_base('Patient')}/Patient/1")
        assert claims(issuer, seen[0])["client_id"] == "kemdr-scheduling"

        class StaticBearer(httpx.Auth):
            def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
                request.headers["Authorization"] = "Bearer static"
                yield request

        # Tests swap the auth for their own.
        runtime.peer_auth = StaticBearer()
        async with runtime.http_client() as http:
            await http.get(f"{runtime.owner_base('Patient')}/Patient/1")
        assert seen[-1] == "static"
    finally:
        app.state.fhir.database.dispose()
