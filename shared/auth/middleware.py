"""The HTTP edge: every request but the public ones must carry a valid bearer token."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth.principal import current_principal
from shared.auth.tokens import InvalidToken, TokenVerifier
from shared.fhir import exact_json
from shared.fhir.errors import issue, operation_outcome

log = logging.getLogger(__name__)

REALM = "kemdr"


def public_paths(base_path: str) -> frozenset[str]:
    """Paths any client may call without a token: discovery, probes and API docs."""
    return frozenset(
        {
            f"{base_path}/metadata",
            f"{base_path}/.well-known/smart-configuration",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/metrics",  # for the cluster network only: see the README
            "/docs",
        }
    )


# Browser pages that sign their users in themselves (a session cookie, never a bearer token)
# and call the API with the user's token: the outcomes clinician pages.
WEB_PREFIX = "/app"


def is_public(path: str, public: frozenset[str]) -> bool:
    """Whether a path needs no bearer token: discovery, probes, docs and the web pages."""
    return (
        path in public
        or path.startswith("/docs/")
        or path == WEB_PREFIX
        or path.startswith(f"{WEB_PREFIX}/")
    )


def unauthorized(message: str, *, error: str | None = "invalid_token") -> Response:
    """401 with an OperationOutcome and the RFC 6750 challenge."""
    challenge = f'Bearer realm="{REALM}"'
    if error:
        # The reason may quote the token's own header (a kid): keep the header well formed.
        safe = "".join(ch for ch in message if ch.isprintable() and ch not in '"\\')[:200]
        challenge += f', error="{error}", error_description="{safe}"'
    body = operation_outcome([issue("error", "login", message)])
    return Response(
        exact_json.dumps(body),
        status_code=401,
        media_type="application/fhir+json; charset=utf-8",
        headers={"WWW-Authenticate": challenge},
    )


class Authentication:
    """Pure ASGI middleware: verify the bearer token and make its caller current."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier | None,
        base_path: str,
        audience: str,
    ) -> None:
        self.app = app
        self.verifier = verifier
        # Fixed by configuration: never taken from the request, whose Host header the
        # client chooses (a token for another audience would pass as ours).
        self.audiences = {audience}
        self.public = public_paths(base_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.verifier is None:
            await self.app(scope, receive, send)
            return
        if is_public(scope["path"], self.public):
            token = current_principal.set(None)
            try:
                await self.app(scope, receive, send)
            finally:
                current_principal.reset(token)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if not header:
            await unauthorized("This request needs a bearer token", error=None)(
                scope, receive, send
            )
            return
        if scheme.lower() != "bearer" or not credentials.strip():
            await unauthorized("The Authorization header must be 'Bearer <token>'")(
                scope, receive, send
            )
            return
        try:
            claims = await self.verifier.verify(credentials.strip(), self.audiences)
        except InvalidToken as exc:
            log.info("refused a token: %s", exc)
            await unauthorized(str(exc))(scope, receive, send)
            return
        client = scope.get("client")
        who = self.verifier.principal(claims, client[0] if client else None)
        token = current_principal.set(who)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(token)
