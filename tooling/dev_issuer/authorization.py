"""OpenID Connect sign-in for clinicians: authorization code + PKCE (S256) with a login form
listing the dev users, and the `authorization_code` grant of the token endpoint."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tooling.dev_issuer.oauth import OAuthError, granted
from tooling.dev_issuer.pkce import CHALLENGE, VERIFIER, AuthorizationRequest, SignIns, s256
from tooling.dev_issuer.state import Client, ClientRegistry, DevUser, KeyRing, UserRegistry

# Identity scopes every user may be granted when the client may ask for them.
IDENTITY_SCOPES = ("openid", "fhirUser", "profile")
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True),
)

CodeGrant = Callable[[dict[str, str], str | None], dict[str, Any]]


def _page(name: str, status: int = 200, *, back_to: str = "", **context: Any) -> HTMLResponse:
    # The login form's answer redirects to the client: browsers apply form-action to it.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(back_to)) if back_to else ""
    csp = f"{_CSP} {origin}".rstrip()
    html = _templates.get_template(name).render(**context)
    headers = {**_PAGE_HEADERS, "Content-Security-Policy": csp}
    return HTMLResponse(html, status_code=status, headers=headers)


def _redirect(uri: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=303)


def _single(items: list[tuple[str, str]]) -> dict[str, str] | str:
    """The parameters as a dict, or the name of one that is repeated (RFC 6749 3.1)."""
    found: dict[str, str] = {}
    for name, value in items:
        if name in found:
            return name
        found[name] = value
    return found


def _check(params: dict[str, str], client: Client) -> tuple[str, str] | None:
    """The (error, description) an authorization request gets, or None when it is sound."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "response_type must be code"
    if not params.get("state"):
        return "invalid_request", "state is required"
    if params.get("code_challenge_method") != "S256":
        return "invalid_request", "code_challenge_method must be S256 (PKCE is required)"
    if not CHALLENGE.match(params.get("code_challenge", "")):
        return "invalid_request", "code_challenge must be the 43-character S256 challenge"
    requested = params.get("scope", "").split()
    if "openid" not in requested:
        return "invalid_scope", "scope must include openid"
    if not granted(requested, client.scope):
        return "invalid_scope", "none of the requested scopes is registered for this client"
    return None


def _client_of(form: dict[str, str], authorization: str | None, clients: ClientRegistry) -> Client:
    """The web client the request authenticates (client_secret_basic or client_secret_post)."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if authorization and scheme.lower() == "basic":
        if "client_secret" in form:
            raise OAuthError("invalid_request", "use one client authentication method")
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials") from None
        client_id, _, secret = decoded.partition(":")
        client_id, secret = unquote(client_id), unquote(secret)
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    client = clients.get(client_id)
    if client is None or not secret or not client.secret_matches(secret):
        raise OAuthError("invalid_client", "unknown client or wrong client secret")
    if form.get("client_id") not in (None, client_id):
        raise OAuthError("invalid_client", "client_id differs from the authenticated client")
    return client


def install_authorization(
    app: FastAPI,
    *,
    issuer: str,
    directory: Path,
    clients: ClientRegistry,
    keys: KeyRing,
    audiences: Sequence[str],
    token_lifetime_s: int,
    practice_claim: str,
) -> CodeGrant:
    """Add `/authorize` (the login form) and return the token endpoint's code grant."""
    users = UserRegistry(directory / "users.json")
    sign_ins = SignIns()

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> Response:
        params = _single(list(request.query_params.multi_items()))
        if isinstance(params, str):
            return _page("error.html", 400, message=f"The parameter {params} is repeated.")
        client = clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        # Never redirect to a URI not registered for the client (RFC 6749 4.1.2.1).
        if client is None or not client.redirect_uris:
            return _page("error.html", 400, message="Unknown client_id.")
        if redirect_uri not in client.redirect_uris:
            return _page("error.html", 400, message="redirect_uri is not registered.")
        problem = _check(params, client)
        if problem is not None:
            error, description = problem
            return _redirect(
                redirect_uri, error=error, error_description=description, state=params.get("state")
            )
        pending = AuthorizationRequest(
            client.client_id,
            redirect_uri,
            tuple(params["scope"].split()),
            params["state"],
            params.get("nonce") or None,
            params["code_challenge"],
        )
        key = sign_ins.pending(pending)
        return _page(
            "login.html",
            back_to=redirect_uri,
            request_id=key,
            client=client.client_id,
            users=users.all(),
        )

    @app.post("/authorize", response_model=None)
    async def sign_in(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        key = form.get("request", "")
        pending = sign_ins.request(key)
        if pending is None:
            message = "This sign-in has expired or was used; start again from the application."
            return _page("error.html", 400, message=message)
        if "cancel" in form:
            sign_ins.issue(key, "", ())  # used up; the code is never handed out
            return _redirect(
                pending.redirect_uri, error="access_denied", state=pending.state, iss=issuer
            )
        user = users.get(form.get("username", ""))
        if user is None or not user.password_matches(form.get("password", "")):
            return _page(
                "login.html",
                back_to=pending.redirect_uri,
                request_id=key,
                client=pending.client_id,
                users=users.all(),
                error="Unknown user or wrong password.",
                chosen=form.get("username", ""),
            )
        client = clients.get(pending.client_id)
        allowed = client.scope if client is not None else ()
        scope = granted(pending.scope, allowed, (*user.scope, *IDENTITY_SCOPES))
        code, _ = sign_ins.issue(key, user.username, tuple(scope))
        return _redirect(pending.redirect_uri, code=code, state=pending.state, iss=issuer)

    def sign(claims: dict[str, Any]) -> str:
        kid, key = keys.signing_key()
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})

    def tokens(client: Client, user: DevUser, scope: tuple[str, ...], nonce: str | None,
               auth_time: int) -> dict[str, Any]:  # fmt: skip
        now = int(time.time())
        access = {
            "iss": issuer,
            "sub": user.username,
            "client_id": client.client_id,
            "aud": list(audiences),
            "iat": now,
            "nbf": now,
            "exp": now + token_lifetime_s,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(scope),
            practice_claim: user.practice_claim(),
            "fhirUser": user.fhir_user,
        }
        identity: dict[str, Any] = {
            "iss": issuer,
            "sub": user.username,
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": now,
            "exp": now + token_lifetime_s,
            "auth_time": auth_time,
        }
        if nonce is not None:
            identity["nonce"] = nonce
        if "fhirUser" in scope:
            identity["fhirUser"] = user.fhir_user
        if "profile" in scope:
            identity["name"] = user.name
        return {
            "access_token": sign(access),
            "token_type": "bearer",
            "expires_in": token_lifetime_s,
            "scope": access["scope"],
            "id_token": sign(identity),
        }

    def code_grant(form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        client = _client_of(form, authorization, clients)
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is missing")
        verifier = form.get("code_verifier", "")
        issued = sign_ins.redeem(code)
        if issued is None or issued.request.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code is unknown, expired or already used")
        if form.get("redirect_uri") != issued.request.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's")
        if not VERIFIER.match(verifier):
            raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
        if s256(verifier) != issued.request.code_challenge:
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        user = users.get(issued.username)
        if user is None:
            raise OAuthError("invalid_grant", "the user of this code no longer exists")
        return tokens(client, user, issued.scope, issued.request.nonce, issued.auth_time)

    return code_grant
