"""The issuer's HTTP face: SMART and OpenID metadata, the JWKS, the login form and the token
endpoint (client credentials for systems, authorization code + PKCE for clinicians)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tooling.dev_issuer import DEFAULT_AUDIENCES
from tooling.dev_issuer.assertion import ASSERTION_ALGS, InvalidClient, ReplayCache, authenticate
from tooling.dev_issuer.authorization import install_authorization
from tooling.dev_issuer.oauth import NO_STORE, OAuthError, granted
from tooling.dev_issuer.state import Client, ClientRegistry, KeyRing, init_state

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PRACTICE = re.compile(r"^(\*|Organization/[A-Za-z0-9\-.]{1,64})$")
_FHIR_USER = re.compile(
    r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"
)


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the body is not a URL-encoded form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name} repeated")
        form[name] = value
    return form


def _claims_extra(client: Client, form: dict[str, str], practice_claim: str) -> dict[str, str]:
    """The practice and fhirUser claims: the registration's default or what the client may ask."""
    extra: dict[str, str] = {}
    practice = form.get("practice") or None
    if practice is not None:
        if not client.may_request_practice:
            raise OAuthError("invalid_request", "this client may not request a practice")
        if not _PRACTICE.match(practice):
            raise OAuthError("invalid_request", "practice must be * or Organization/<id>")
    practice = practice or client.practice
    if practice:
        extra[practice_claim] = practice
    user = form.get("fhir_user") or None
    if user is not None:
        if not client.may_request_fhir_user:
            raise OAuthError("invalid_request", "this client may not request a fhirUser")
        if not _FHIR_USER.match(user):
            raise OAuthError("invalid_request", "fhir_user must be e.g. Practitioner/<id>")
        extra["fhirUser"] = user
    return extra


def create_app(
    directory: Path,
    issuer: str,
    audiences: Sequence[str] = DEFAULT_AUDIENCES,
    *,
    token_lifetime_s: int = 300,
    user_token_lifetime_s: int = 3600,
    practice_claim: str = "practice",
) -> FastAPI:
    """The issuer app; its state (keys, clients) is created in `directory` on first start."""
    init_state(directory)
    issuer = issuer.rstrip("/")
    token_endpoint = f"{issuer}/token"
    keys = KeyRing(directory / "keys.json")
    clients = ClientRegistry(directory / "clients.json")
    replay = ReplayCache()
    app = FastAPI(title="kemdr dev issuer", docs_url=None, redoc_url=None, openapi_url=None)

    def metadata() -> dict[str, Any]:
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": token_endpoint,
            "grant_types_supported": ["client_credentials", "authorization_code"],
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_post",
                "client_secret_basic",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "scopes_supported": clients.scopes(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
            "authorization_response_iss_parameter_supported": True,
            "capabilities": [
                "client-confidential-asymmetric",
                "client-confidential-symmetric",
                "launch-standalone",
                "sso-openid-connect",
                "permission-v2",
                "permission-v1",
            ],
        }

    code_grant = install_authorization(
        app,
        issuer=issuer,
        directory=directory,
        clients=clients,
        keys=keys,
        audiences=audiences,
        token_lifetime_s=user_token_lifetime_s,
        practice_claim=practice_claim,
    )
    app.get("/.well-known/smart-configuration")(metadata)
    app.get("/.well-known/openid-configuration")(metadata)

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return keys.jwks()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def issue(form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        if form.get("grant_type") == "authorization_code":
            return code_grant(form, authorization)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", "only client_credentials and authorization_code"
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        if not form.get("client_assertion"):
            raise OAuthError("invalid_request", "client_assertion is missing")
        if not form.get("scope"):
            raise OAuthError("invalid_request", "scope is missing")
        try:
            client = authenticate(form["client_assertion"], clients, token_endpoint, replay)
        except InvalidClient as exc:
            raise OAuthError("invalid_client", str(exc)) from exc
        if form.get("client_id") not in (None, client.client_id):
            raise OAuthError("invalid_client", "client_id differs from the assertion's iss")
        requested = form["scope"].split()
        scopes = granted(requested, client.scope)
        if not scopes:
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed")
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": client.client_id,
            "client_id": client.client_id,
            "aud": list(audiences),
            "iat": now,
            "nbf": now,
            "exp": now + token_lifetime_s,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(scopes),
            **_claims_extra(client, form, practice_claim),
        }
        kid, key = keys.signing_key()
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": token_lifetime_s,
            "scope": claims["scope"],
        }

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        try:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/x-www-form-urlencoded":
                raise OAuthError("invalid_request", "send a x-www-form-urlencoded form")
            form = _form(await request.body())
            body = issue(form, request.headers.get("authorization"))
            return JSONResponse(body, headers=NO_STORE)
        except OAuthError as exc:
            status = 401 if exc.error == "invalid_client" else 400
            body = {"error": exc.error, "error_description": exc.description}
            return JSONResponse(body, status_code=status, headers=NO_STORE)

    return app
