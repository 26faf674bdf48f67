"""Token verification against a real issuer process: discovery, key rotation, outages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.auth_support import mint, rsa_key
from tests.fhir_asserts import assert_outcome
from tests.issuer_support import AUDIENCES, running_issuer, token_from
from tooling.service_process import ROOT


def _rotate(directory: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tooling.dev_issuer", "rotate", "--dir", str(directory), *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


async def _get(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/Patient", headers={"Authorization": f"Bearer {token}"})


async def test_keys_are_discovered_rotated_and_kept_through_an_issuer_outage(
    service_client: Callable[..., httpx.AsyncClient], tmp_path: Path
):
    directory = tmp_path / "auth"
    with running_issuer(directory) as issuer:
        client = service_client(
            "intake",
            auth_issuer=issuer.url,
            auth_jwks="",
            auth_audience=AUDIENCES[0],
            auth_jwks_min_refresh_s=0,
        )
        verifier = client._transport.app.state.auth  # type: ignore[attr-defined]
        first = await asyncio.to_thread(token_from, issuer, "system/*.rs")
        assert (await _get(client, first)).status_code == 200

        # A new signing key: its kid is unknown until the JWKS is fetched again.
        await asyncio.to_thread(_rotate, directory)
        second = await asyncio.to_thread(token_from, issuer, "system/*.rs")
        assert (await _get(client, second)).status_code == 200
        assert (await _get(client, first)).status_code == 200  # not retired yet

        # Retiring the old key stops the tokens it signed, cached verification or not.
        await asyncio.to_thread(_rotate, directory, "--retire")
        third = await asyncio.to_thread(token_from, issuer, "system/*.rs")
        assert (await _get(client, third)).status_code == 200
        refused = await _get(client, first)
        assert_outcome(refused, 401, "login")
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]

    # The issuer is gone: the cached keys still verify (even with nothing pre-verified)...
    verifier._verified.clear()
    assert (await _get(client, third)).status_code == 200
    # ...and a token whose key cannot be had is a 401, never a 500.
    stranger = mint(iss=issuer.url, aud=AUDIENCES[0], kid="unknown-kid", key=rsa_key("other"))
    assert_outcome(await _get(client, stranger), 401, "login")
    await client.aclose()


async def test_an_issuer_that_never_answered_means_401_not_500(
    service_client: Callable[..., httpx.AsyncClient],
):
    client = service_client(
        "intake", auth_issuer="http://127.0.0.1:9", auth_jwks="", auth_audience=AUDIENCES[0]
    )
    token = mint(iss="http://127.0.0.1:9", aud=AUDIENCES[0])
    response = await _get(client, token)
    assert_outcome(response, 401, "login")
    assert "no signing key" in response.json()["issue"][0]["diagnostics"]
    await client.aclose()
