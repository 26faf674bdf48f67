"""The dev issuer's OpenID Connect sign-in: authorization code + PKCE (S256), its login form of
dev users, the code grant's checks (RFC 6749, RFC 7636) and the tokens it gives."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from tests.issuer_support import AUDIENCES, Issuer, login_form_request, running_issuer, sign_in_at
from tooling.dev_issuer import WEB_CLIENT, client_secret_file
from tooling.dev_issuer.state import register_web_client

REDIRECT = "https://client.test/app/callback"
OTHER = "other-web"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("sign-in") / "state") as running:
        register_web_client(running.directory, redirect_uris=(REDIRECT,))
        register_web_client(running.directory, OTHER, redirect_uris=(REDIRECT,))
        yield running


def secret(issuer: Issuer, client_id: str = WEB_CLIENT) -> str:
    return client_secret_file(issuer.directory, client_id).read_text().strip()


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(issuer: Issuer, verifier: str, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": WEB_CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser profile user/*.rs",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": challenge(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return f"{issuer.url}/authorize?{urlencode({k: v for k, v in params.items() if v})}"


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text[:300]
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_for(issuer: Issuer, verifier: str, username: str = "psychiatrist-a", **kw: str) -> str:
    answer = query(sign_in_at(issuer.url, authorize_url(issuer, verifier, **kw), username))
    assert answer["state"] == kw.get("state", "state-1") and answer["iss"] == issuer.url
    return answer["code"]


def redeem(issuer: Issuer, code: str, verifier: str, /, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": WEB_CLIENT,
        "client_secret": secret(issuer),
        **overrides,
    }
    return httpx.post(issuer.token_endpoint, data={k: v for k, v in form.items() if v})


def claims(issuer: Issuer, token: str, audience: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(issuer.jwks())[kid]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer.url)


def test_discovery_names_the_authorization_endpoint_in_both_documents(issuer: Issuer):
    for path in ("openid-configuration", "smart-configuration"):
        metadata = httpx.get(f"{issuer.url}/.well-known/{path}").json()
        assert metadata["authorization_endpoint"] == f"{issuer.url}/authorize"
        assert metadata["response_types_supported"] == ["code"]
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert "client_secret_post" in metadata["token_endpoint_auth_methods_supported"]


def test_a_clinician_signs_in_and_the_client_gets_an_id_token_and_an_access_token(
    issuer: Issuer,
):
    verifier = secrets.token_urlsafe(48)
    page = httpx.get(authorize_url(issuer, verifier))
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Dr Anna de Vries" in page.text and "Organization/practice-b" in page.text
    assert page.headers["cache-control"] == "no-store"
    response = redeem(issuer, code_for(issuer, verifier), verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    identity = claims(issuer, body["id_token"], WEB_CLIENT)
    assert identity["sub"] == "psychiatrist-a" and identity["nonce"] == "nonce-1"
    assert identity["fhirUser"] == "Practitioner/dev-psychiatrist-a"
    assert identity["name"] == "Dr Anna de Vries"
    access = claims(issuer, body["access_token"], AUDIENCES[0])
    assert access["client_id"] == WEB_CLIENT and access["sub"] == "psychiatrist-a"
    assert access["practice"] == "Organization/practice-a"
    assert access["fhirUser"] == "Practitioner/dev-psychiatrist-a"
    assert access["scope"] == "openid fhirUser profile user/*.rs" == body["scope"]


def test_the_scopes_granted_are_those_the_client_and_the_user_both_may_have(issuer: Issuer):
    verifier = secrets.token_urlsafe(48)
    scope = "openid user/*.cruds user/Observation.rs"
    code = code_for(issuer, verifier, "therapist-a", scope=scope)
    body = redeem(issuer, code, verifier).json()
    # The web client may only read; the therapist may write Observations but not all types.
    assert body["scope"] == "openid user/Observation.rs"
    assert "fhirUser" not in claims(issuer, body["id_token"], WEB_CLIENT)


def test_pkce_mismatch_is_invalid_grant(issuer: Issuer):
    verifier = secrets.token_urlsafe(48)
    code = code_for(issuer, verifier)
    response = redeem(issuer, code, secrets.token_urlsafe(48))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    # The failed attempt used the code up: the right verifier comes too late.
    assert redeem(issuer, code, verifier).json()["error"] == "invalid_grant"


def test_a_code_is_single_use(issuer: Issuer):
    verifier = secrets.token_urlsafe(48)
    code = code_for(issuer, verifier)
    assert redeem(issuer, code, verifier).status_code == 200
    again = redeem(issuer, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"redirect_uri": "https://client.test/other"}, 400, "invalid_grant"),
        ({"code_verifier": ""}, 400, "invalid_grant"),
        ({"code": "made-up"}, 400, "invalid_grant"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": OTHER, "client_secret": "from-other"}, 401, "invalid_client"),
    ],
    ids=["wrong redirect_uri", "no verifier", "unknown code", "wrong secret", "other client"],
)
def test_the_code_grant_refuses(issuer: Issuer, overrides: dict[str, str], status: int, error: str):
    verifier = secrets.token_urlsafe(48)
    code = code_for(issuer, verifier)
    if overrides.get("client_secret") == "from-other":
        overrides = {**overrides, "client_secret": secret(issuer, OTHER)}
        status, error = 400, "invalid_grant"  # a real client, but the code is not its
    response = redeem(issuer, code, verifier, **overrides)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def test_client_secret_basic_authenticates_too(issuer: Issuer):
    verifier = secrets.token_urlsafe(48)
    code = code_for(issuer, verifier)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    response = httpx.post(issuer.token_endpoint, data=form, auth=(WEB_CLIENT, secret(issuer)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "user/*.rs"}, "invalid_scope"),
        ({"state": None}, "invalid_request"),
    ],
    ids=["plain PKCE", "no PKCE", "implicit", "no openid", "no state"],
)
def test_a_bad_authorization_request_goes_back_with_its_error(
    issuer: Issuer, overrides: dict[str, str | None], error: str
):
    response = httpx.get(authorize_url(issuer, secrets.token_urlsafe(48), **overrides))
    answer = query(response)
    assert answer["error"] == error and answer.get("state") == overrides.get("state", "state-1")
    assert "code" not in answer


@pytest.mark.parametrize(
    "overrides",
    [{"redirect_uri": "https://evil.test/callback"}, {"client_id": "nobody"}],
    ids=["unregistered redirect_uri", "unknown client"],
)
def test_an_unknown_client_or_redirect_uri_is_never_redirected_to(
    issuer: Issuer, overrides: dict[str, str]
):
    response = httpx.get(authorize_url(issuer, secrets.token_urlsafe(48), **overrides))
    assert response.status_code == 400 and "location" not in response.headers
    assert "cannot go on" in response.text


def test_a_wrong_password_shows_the_form_again_and_issues_no_code(issuer: Issuer):
    url = authorize_url(issuer, secrets.token_urlsafe(48))
    response = sign_in_at(issuer.url, url, "psychiatrist-b", password="guess")
    assert response.status_code == 200 and "location" not in response.headers
    assert "wrong password" in response.text
    # The same request can be retried from the form it shows.
    retry = httpx.post(
        f"{issuer.url}/authorize",
        data={
            "request": login_form_request(response.text),
            "username": "psychiatrist-b",
            "password": "kemdr-dev",
        },
    )
    assert "code" in query(retry)


def test_cancelling_answers_access_denied(issuer: Issuer):
    page = httpx.get(authorize_url(issuer, secrets.token_urlsafe(48)))
    response = httpx.post(
        f"{issuer.url}/authorize",
        data={"request": login_form_request(page.text), "cancel": "1"},
    )
    answer = query(response)
    assert answer["error"] == "access_denied" and "code" not in answer
