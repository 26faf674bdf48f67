"""SMART Backend Services, client side: a service's own access token for calls to its peers."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

from shared.auth.jwk import PrivateKey, load_private_key, public_jwk, signing_alg
from shared.settings import ServiceSettings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART allows at most five minutes; less leaves room for clock difference.
ASSERTION_LIFETIME_S = 240
# A token this close to its expiry is renewed first, so it never expires on the way.
REFRESH_MARGIN_S = 30.0


class TokenError(RuntimeError):
    """No access token: the issuer could not be reached or refused the client."""


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float


class ClientCredentials(httpx.Auth):
    """An httpx auth that sends a cached bearer token, obtained by the client-credentials grant
    with a signed client assertion (private_key_jwt); a 401 renews it and retries once."""

    def __init__(
        self,
        client_id: str,
        key: PrivateKey,
        *,
        issuer: str = "",
        token_endpoint: str = "",
        scope: str = "system/*.rs",
        params: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not (issuer or token_endpoint):
            raise ValueError("an issuer or a token endpoint is needed")
        self.client_id, self.key, self.scope = client_id, key, scope
        self.issuer = issuer.rstrip("/")
        self.token_endpoint = token_endpoint
        # Extra form fields (the dev issuer's `practice`, `fhir_user`).
        self.params = dict(params or {})
        self.timeout = timeout
        self.kid = public_jwk(key)["kid"]
        self.alg = signing_alg(key)
        self._token: _Token | None = None
        self._sync_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ClientCredentials | None:
        """The service's own client, or None when no client id is configured."""
        if not settings.auth_client_id:
            return None
        if not settings.auth_client_key_file:
            raise ValueError("auth_client_id is set but auth_client_key_file is not")
        return cls(
            settings.auth_client_id,
            load_private_key(Path(settings.auth_client_key_file)),
            issuer=settings.auth_issuer,
            token_endpoint=settings.auth_token_endpoint,
        )

    # ---- the grant -------------------------------------------------------------------
    def assertion(self, token_endpoint: str) -> str:
        """A fresh signed client assertion for the token endpoint."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_endpoint,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def _form(self, token_endpoint: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(token_endpoint),
            "scope": self.scope,
            **self.params,
        }

    def _metadata_urls(self) -> list[str]:
        return [
            f"{self.issuer}/.well-known/smart-configuration",
            f"{self.issuer}/.well-known/openid-configuration",
        ]

    @staticmethod
    def _endpoint_from(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return None
        endpoint = response.json().get("token_endpoint")
        return endpoint if isinstance(endpoint, str) and endpoint else None

    def _accept(self, response: httpx.Response) -> _Token:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            why = body.get("error_description") or body.get("error") or response.text[:200]
            raise TokenError(f"token request refused ({response.status_code}): {why}")
        lifetime = float(body.get("expires_in") or 300)
        margin = min(REFRESH_MARGIN_S, lifetime / 2)
        return _Token(body["access_token"], time.monotonic() + lifetime - margin)

    def _valid(self) -> _Token | None:
        token = self._token
        return token if token is not None and time.monotonic() < token.renew_at else None

    def invalidate(self, refused: str | None = None) -> None:
        """Forget the cached token (or only if it is `refused`: a concurrent 401 may have
        renewed it already)."""
        if refused is None or (self._token is not None and self._token.value == refused):
            self._token = None

    def token(self) -> str:
        """The cached access token, obtained anew when missing or nearly expired (blocking)."""
        with self._sync_lock:
            if (cached := self._valid()) is not None:
                return cached.value
            try:
                with httpx.Client(timeout=self.timeout) as http:
                    if not self.token_endpoint:
                        for url in self._metadata_urls():
                            if found := self._endpoint_from(http.get(url)):
                                self.token_endpoint = found
                                break
                        else:
                            raise TokenError(f"{self.issuer} publishes no token_endpoint")
                    response = http.post(self.token_endpoint, data=self._form(self.token_endpoint))
            except httpx.HTTPError as exc:
                raise TokenError(f"the issuer could not be reached: {exc}") from exc
            self._token = self._accept(response)
            return self._token.value

    async def atoken(self) -> str:
        """The cached access token, obtained anew when missing or nearly expired."""
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            if (cached := self._valid()) is not None:
                return cached.value
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as http:
                    if not self.token_endpoint:
                        for url in self._metadata_urls():
                            if found := self._endpoint_from(await http.get(url)):
                                self.token_endpoint = found
                                break
                        else:
                            raise TokenError(f"{self.issuer} publishes no token_endpoint")
                    form = self._form(self.token_endpoint)
                    response = await http.post(self.token_endpoint, data=form)
            except httpx.HTTPError as exc:
                raise TokenError(f"the issuer could not be reached: {exc}") from exc
            self._token = self._accept(response)
            return self._token.value

    # ---- httpx.Auth ------------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        sent = self.token()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401:
            # Revoked, or signed by a key the resource server no longer trusts: once more.
            self.invalidate(sent)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self.atoken()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(sent)
            request.headers["Authorization"] = f"Bearer {await self.atoken()}"
            yield request
