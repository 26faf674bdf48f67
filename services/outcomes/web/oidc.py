"""The pages' OpenID Connect client: authorization code + PKCE (S256) at AUTH_ISSUER, the code
exchanged with client_secret_post, the id_token checked against the issuer's JWKS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from services.outcomes.settings import OutcomesSettings
from shared.auth.keys import METADATA_PATHS, IssuerKeys, KeysUnavailable
from shared.auth.tokens import ALGORITHMS

# A sign-in started must come back within this long.
LOGIN_LIFETIME_S = 600
_MAX_PENDING = 10_000


class SignInError(Exception):
    """The sign-in cannot complete; the message is safe to show."""


@dataclass(frozen=True)
class PendingLogin:
    """What the callback must find again: the state, nonce and PKCE verifier of one sign-in."""

    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    next_path: str = "/app/"
    expires: float = field(default_factory=lambda: time.time() + LOGIN_LIFETIME_S)

    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class PendingLogins:
    """Sign-ins under way, by a random id kept in the browser's login cookie (in memory)."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingLogin] = {}

    def add(self, login: PendingLogin) -> str:
        now = time.time()
        self._pending = {k: v for k, v in self._pending.items() if v.expires > now}
        while len(self._pending) >= _MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        key = secrets.token_urlsafe(24)
        self._pending[key] = login
        return key

    def take(self, key: str) -> PendingLogin | None:
        """The sign-in, once (a replayed callback finds nothing)."""
        login = self._pending.pop(key, None)
        return login if login is not None and login.expires > time.time() else None


class OIDCClient:
    """One confidential client of the issuer."""

    def __init__(self, settings: OutcomesSettings, *, timeout_s: float = 10.0) -> None:
        self.issuer = settings.auth_issuer.rstrip("/")
        self.client_id = settings.web_client_id
        self.secret = settings.web_secret()
        self.redirect_uri = f"{settings.web_base()}/app/callback"
        self.scope = settings.web_scope
        self.clock_skew_s = settings.auth_clock_skew_s
        self.timeout_s = timeout_s
        self.keys = IssuerKeys(self.issuer, min_refresh_s=settings.auth_jwks_min_refresh_s)
        self._metadata: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.client_id and self.secret)

    async def metadata(self) -> dict[str, Any]:
        """The issuer's metadata (fetched once): where to authorize and redeem codes."""
        async with self._lock:
            if self._metadata is None:
                self._metadata = await self._discover()
        return self._metadata

    async def _discover(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for path in reversed(METADATA_PATHS):  # OpenID's first: this is a sign-in
                try:
                    response = await client.get(self.issuer + path)
                except httpx.HTTPError:
                    continue
                if response.status_code != 200:
                    continue
                found = response.json()
                if isinstance(found, dict) and found.get("authorization_endpoint"):
                    return found
        raise SignInError("The identity provider does not answer; try again later.")

    async def authorization_url(self, login: PendingLogin) -> str:
        """Where the browser goes to sign in."""
        endpoint = (await self.metadata())["authorization_endpoint"]
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": login.challenge(),
            "code_challenge_method": "S256",
        }
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    async def redeem(self, code: str, login: PendingLogin) -> tuple[dict[str, Any], str, float]:
        """The code's tokens: the id_token's checked claims, the access token and how many
        seconds it lasts."""
        endpoint = (await self.metadata())["token_endpoint"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": login.verifier,
            "client_id": self.client_id,
            "client_secret": self.secret,
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(endpoint, data=form)
        except httpx.HTTPError:
            raise SignInError("The identity provider does not answer; try again later.") from None
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if response.status_code != 200:
            raise SignInError(f"The identity provider refused the sign-in ({body.get('error')}).")
        access, id_token = body.get("access_token"), body.get("id_token")
        if not isinstance(access, str) or not isinstance(id_token, str):
            raise SignInError("The identity provider gave no access token or id_token.")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 300.0
        return await self.identity(id_token, login.nonce), access, seconds

    async def identity(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of a valid id_token for this client and sign-in (OpenID Core 3.1.3.7)."""
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("alg") not in ALGORITHMS:
                raise SignInError("The id_token is signed with an algorithm not accepted.")
            key = await self.keys.key(header.get("kid"))
            claims = jwt.decode(
                id_token,
                key,
                algorithms=[header["alg"]],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=self.clock_skew_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except (jwt.PyJWTError, KeysUnavailable) as exc:
            raise SignInError(f"The id_token is not valid ({type(exc).__name__}).") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInError("The id_token does not answer this sign-in (nonce).")
        if claims.get("azp", self.client_id) != self.client_id:
            raise SignInError("The id_token was issued to another client (azp).")
        return claims
