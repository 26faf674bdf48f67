"""The short-lived state of sign-ins: pending authorization requests and their codes, and
PKCE (RFC 7636, S256 only)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

# A pending request may wait for its user this long; a code must be redeemed within a minute.
REQUEST_LIFETIME_S = 600
CODE_LIFETIME_S = 60
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def s256(verifier: str) -> str:
    """The S256 code challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class AuthorizationRequest:
    """What a client asked at `GET /authorize`, checked, waiting for its user to sign in."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    nonce: str | None
    code_challenge: str
    expires: float = field(default_factory=lambda: time.time() + REQUEST_LIFETIME_S)


@dataclass(frozen=True)
class IssuedCode:
    """A code handed to a client: bound to it, its redirect URI, its challenge and the user."""

    request: AuthorizationRequest
    username: str
    scope: tuple[str, ...]
    auth_time: int
    expires: float = field(default_factory=lambda: time.time() + CODE_LIFETIME_S)


class SignIns:
    """Pending requests and issued codes, in memory (one dev issuer process)."""

    def __init__(self) -> None:
        self._requests: dict[str, AuthorizationRequest] = {}
        self._codes: dict[str, IssuedCode] = {}
        self._lock = threading.Lock()

    def _sweep(self, now: float) -> None:
        self._requests = {k: v for k, v in self._requests.items() if v.expires > now}
        self._codes = {k: v for k, v in self._codes.items() if v.expires > now}

    def pending(self, request: AuthorizationRequest) -> str:
        """Keep a checked request; its random id is all the login form carries."""
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._sweep(time.time())
            self._requests[key] = request
        return key

    def request(self, key: str) -> AuthorizationRequest | None:
        """The pending request (it stays until signed in, so a wrong password can retry)."""
        with self._lock:
            found = self._requests.get(key)
        return found if found is not None and found.expires > time.time() else None

    def issue(self, key: str, username: str, scope: tuple[str, ...]) -> tuple[str, IssuedCode]:
        """Turn a pending request into a code (the request is used up)."""
        with self._lock:
            request = self._requests.pop(key)
            code = secrets.token_urlsafe(32)
            issued = IssuedCode(request, username, scope, int(time.time()))
            self._codes[code] = issued
        return code, issued

    def redeem(self, code: str) -> IssuedCode | None:
        """The code's grant, once: any presentation uses it up, right or wrong."""
        with self._lock:
            issued = self._codes.pop(code, None)
        return issued if issued is not None and issued.expires > time.time() else None
