"""The dev issuer as a real process on a free port, and client assertions to send it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt

from shared.auth.jwk import PrivateKey, load_private_key, public_jwk
from tooling.dev_issuer import DEV_CLIENT, DEV_PASSWORD, client_key_file
from tooling.ports import free_port
from tooling.service_process import HTTPProcess

AUDIENCES = ("http://127.0.0.1:18001/fhir", "http://127.0.0.1:18002/fhir")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Issuer:
    """A running dev issuer: its URL, state directory and the keys of its clients."""

    def __init__(self, process: HTTPProcess, directory: Path) -> None:
        self.process, self.directory, self.url = process, directory, process.url
        self.token_endpoint = f"{self.url}/token"

    def key(self, client_id: str = DEV_CLIENT) -> PrivateKey:
        return load_private_key(client_key_file(self.directory, client_id))

    def jwks(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/jwks").json()

    def assertion(
        self,
        client_id: str = DEV_CLIENT,
        *,
        key: Any = None,
        alg: str = "RS384",
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        """A client assertion, correct unless the arguments say otherwise."""
        key = key if key is not None else self.key(client_id)
        now = int(time.time())
        body = {
            "iss": client_id,
            "sub": client_id,
            "aud": self.token_endpoint,
            "iat": now,
            "exp": now + 240,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        if kid is None and alg != "none" and not isinstance(key, str | bytes):
            kid = public_jwk(key)["kid"]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)

    def request(self, assertion: str, scope: str = "system/*.rs", **form: str) -> httpx.Response:
        """POST /token with the client-credentials form."""
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
            **form,
        }
        return httpx.post(self.token_endpoint, data=data)


@contextmanager
def running_issuer(
    directory: Path, *args: str, audiences: tuple[str, ...] = AUDIENCES
) -> Iterator[Issuer]:
    """`python -m tooling.dev_issuer serve` on a free port, state in `directory`."""
    port = free_port()
    audience_args = [arg for audience in audiences for arg in ("--audience", audience)]
    argv = ["-m", "tooling.dev_issuer", "serve", "--port", str(port), "--dir", str(directory)]
    process = HTTPProcess("dev-issuer", [*argv, *audience_args, *args], {}, port)
    with process:
        yield Issuer(process, directory)


def token_from(issuer: Issuer, scope: str = "system/*.cruds system/Ops.r", **form: str) -> str:
    """A token from the issuer for the dev client, through the client-credentials flow."""
    response = issuer.request(issuer.assertion(), scope, **form)
    response.raise_for_status()
    return response.json()["access_token"]


def login_form_request(page: str) -> str:
    """The pending request id the issuer's login form carries."""
    match = re.search(r'name="request" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def sign_in_at(
    issuer_url: str, authorize_url: str, username: str, password: str = DEV_PASSWORD
) -> httpx.Response:
    """Open the issuer's login form at `authorize_url` and submit it as a dev user; the answer
    is the redirect back to the client (or the form again)."""
    with httpx.Client() as browser:
        form = browser.get(authorize_url)
        assert form.status_code == 200, form.text[:500]
        data = {"request": login_form_request(form.text), "username": username}
        return browser.post(f"{issuer_url}/authorize", data={**data, "password": password})
