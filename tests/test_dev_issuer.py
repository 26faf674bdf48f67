"""The dev issuer, over HTTP as a real process: metadata, JWKS, client authentication by
signed assertion (SMART Backend Services), the tokens it signs, and key rotation."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.auth.jwk import public_jwk
from tests.issuer_support import AUDIENCES, Issuer, running_issuer
from tooling.dev_issuer import DEV_CLIENT
from tooling.dev_issuer.state import register_client
from tooling.service_process import ROOT


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("dev-auth") / "state") as running:
        yield running


def verify(issuer: Issuer, token: str) -> dict[str, Any]:
    """The token's claims, its signature checked against the served JWKS."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(issuer.jwks())[kid]
    return jwt.decode(
        token, key.key, algorithms=["RS256"], audience=AUDIENCES[0], issuer=issuer.url
    )


def test_metadata_names_the_endpoints_and_the_jwks_holds_public_keys_only(issuer: Issuer):
    for path in ("smart-configuration", "openid-configuration"):
        metadata = httpx.get(f"{issuer.url}/.well-known/{path}").json()
        assert metadata["issuer"] == issuer.url
        assert metadata["token_endpoint"] == issuer.token_endpoint
        assert metadata["jwks_uri"] == f"{issuer.url}/jwks"
        assert metadata["authorization_endpoint"] == f"{issuer.url}/authorize"
        assert metadata["grant_types_supported"] == ["client_credentials", "authorization_code"]
        assert metadata["token_endpoint_auth_methods_supported"][0] == "private_key_jwt"
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        assert "system/*.rs" in metadata["scopes_supported"]
        assert {"client-confidential-asymmetric", "permission-v2"} <= set(metadata["capabilities"])
    keys = issuer.jwks()["keys"]
    assert len(keys) == 1 and keys[0]["kid"] and keys[0]["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


def test_state_files_are_private(issuer: Issuer):
    for pem in issuer.directory.glob("*.pem"):
        assert pem.stat().st_mode & 0o777 == 0o600, pem
    assert {p.name for p in issuer.directory.glob("kemdr-*.pem")} == {
        "kemdr-dev.pem",
        "kemdr-intake.pem",
        "kemdr-scheduling.pem",
        "kemdr-outcomes.pem",
    }


def test_a_good_assertion_gets_a_token_with_the_right_claims(issuer: Issuer):
    response = issuer.request(
        issuer.assertion(),
        scope="system/*.rs user/Patient.r openid system/Observation.cruds",
        practice="Organization/p1",
        fhir_user="Practitioner/123",
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    # openid is not registered for the dev client: left out, the rest granted.
    assert body["scope"] == "system/*.rs user/Patient.r system/Observation.cruds"
    claims = verify(issuer, body["access_token"])
    assert claims["iss"] == issuer.url
    assert claims["sub"] == claims["client_id"] == DEV_CLIENT
    assert claims["aud"] == list(AUDIENCES)
    assert claims["scope"] == body["scope"]
    assert claims["practice"] == "Organization/p1"
    assert claims["fhirUser"] == "Practitioner/123"
    assert claims["nbf"] <= claims["iat"] + 1 and claims["exp"] == claims["iat"] + 300
    assert claims["jti"]


def test_a_service_client_gets_its_registered_programme_wide_practice(issuer: Issuer):
    response = issuer.request(issuer.assertion("kemdr-intake"), scope="system/Patient.r")
    assert response.status_code == 200, response.text
    claims = verify(issuer, response.json()["access_token"])
    assert (claims["client_id"], claims["practice"], claims["scope"]) == (
        "kemdr-intake",
        "*",
        "system/Patient.r",
    )
    assert "fhirUser" not in claims


def test_an_es384_client_registered_while_running_is_accepted(issuer: Issuer):
    key = ec.generate_private_key(ec.SECP384R1())
    register_client(issuer.directory, "ec-client", scope="system/*.rs", key=key)
    response = issuer.request(issuer.assertion("ec-client", key=key, alg="ES384"))
    assert response.status_code == 200, response.text
    # An ES384 signature naming an RSA client's key: no key of that client can check it.
    rsa_kid = public_jwk(issuer.key())["kid"]
    refused = issuer.request(issuer.assertion(key=key, alg="ES384", kid=rsa_kid))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_a_replayed_assertion_is_refused(issuer: Issuer):
    assertion = issuer.assertion()
    assert issuer.request(assertion).status_code == 200
    replay = issuer.request(assertion)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]


def _other_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_ASSERTIONS: dict[str, Callable[[Issuer], str]] = {
    # Signed by another key, claiming the registered key's kid.
    "wrong key": lambda i: i.assertion(key=_other_rsa(), kid=public_jwk(i.key())["kid"]),
    "unknown kid": lambda i: i.assertion(key=_other_rsa()),
    "wrong aud": lambda i: i.assertion(aud="http://127.0.0.1:1/token"),
    "expired": lambda i: i.assertion(exp=int(time.time()) - 120),
    "exp over five minutes ahead": lambda i: i.assertion(exp=int(time.time()) + 900),
    "no exp": lambda i: i.assertion(exp=None),
    "no jti": lambda i: i.assertion(jti=None),
    "sub is not iss": lambda i: i.assertion(sub="kemdr-intake"),
    "unknown client": lambda i: i.assertion("nobody", key=i.key()),
    "another client's key": lambda i: i.assertion("kemdr-intake", key=i.key(DEV_CLIENT)),
    "HS256": lambda i: i.assertion(key="a-shared-secret-of-at-least-32-bytes!", alg="HS256"),
    "alg none": lambda i: i.assertion(key="", alg="none", kid=public_jwk(i.key())["kid"]),
    "RS256": lambda i: i.assertion(alg="RS256"),
    "not a JWT": lambda i: "not.a.jwt",
}


@pytest.mark.parametrize("make", BAD_ASSERTIONS.values(), ids=BAD_ASSERTIONS.keys())
def test_bad_client_assertions_are_refused_as_invalid_client(
    issuer: Issuer, make: Callable[[Issuer], str]
):
    response = issuer.request(make(issuer))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"]


@pytest.mark.parametrize(
    ("client", "form", "error"),
    [
        ("kemdr-intake", {"scope": "system/Patient.c user/*.rs"}, "invalid_scope"),
        ("kemdr-intake", {"practice": "*"}, "invalid_request"),
        ("kemdr-intake", {"fhir_user": "Practitioner/1"}, "invalid_request"),
        (DEV_CLIENT, {"practice": "p1"}, "invalid_request"),
        (DEV_CLIENT, {"fhir_user": "Organization/1"}, "invalid_request"),
        (DEV_CLIENT, {"grant_type": "password"}, "unsupported_grant_type"),
        (DEV_CLIENT, {"client_assertion_type": "urn:other"}, "invalid_request"),
        (DEV_CLIENT, {"scope": ""}, "invalid_request"),
    ],
    ids=[
        "scope not registered",
        "service client asks a practice",
        "service client asks a fhirUser",
        "practice not a reference",
        "fhirUser not a person",
        "wrong grant type",
        "wrong assertion type",
        "no scope",
    ],
)
def test_disallowed_requests_are_refused(
    issuer: Issuer, client: str, form: dict[str, str], error: str
):
    response = issuer.request(issuer.assertion(client), **form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


def test_rotation_publishes_the_new_key_first_and_retire_removes_the_old(tmp_path: Path):
    with running_issuer(tmp_path / "state") as issuer:
        old = issuer.jwks()["keys"][0]["kid"]

        def rotate(*args: str) -> None:
            argv = ["-m", "tooling.dev_issuer", "rotate", "--dir", str(issuer.directory), *args]
            subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True)

        def signer() -> str:
            token = issuer.request(issuer.assertion()).json()["access_token"]
            verify(issuer, token)
            return jwt.get_unverified_header(token)["kid"]

        rotate()
        # The running issuer reloads its key file: no restart needed.
        kids = [k["kid"] for k in issuer.jwks()["keys"]]
        assert len(kids) == 2 and kids[1] == old
        assert signer() == kids[0]
        rotate("--retire")
        newest = [k["kid"] for k in issuer.jwks()["keys"]]
        assert len(newest) == 1 and newest[0] not in kids
        assert signer() == newest[0]
        assert not list(issuer.directory.glob(f"issuer-{old}.pem"))
    # A restart keeps the rotated keys and the registered clients.
    with running_issuer(tmp_path / "state") as restarted:
        assert [k["kid"] for k in restarted.jwks()["keys"]] == newest
        assert restarted.request(restarted.assertion()).status_code == 200


def _token_cli(url: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["-m", "tooling.token", "--issuer", url, "--dir", str(directory)]
    return subprocess.run(
        [sys.executable, *argv, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_token_command_prints_a_token_as_its_last_line(issuer: Issuer):
    result = _token_cli(
        issuer.url,
        issuer.directory,
        "--scope",
        "system/*.rs",
        "--practice",
        "p7",
        "--user",
        "Practitioner/9",
    )
    assert result.returncode == 0, result.stderr
    claims = verify(issuer, result.stdout.splitlines()[-1])
    assert claims["practice"] == "Organization/p7"
    assert claims["fhirUser"] == "Practitioner/9"
    assert claims["scope"] == "system/*.rs"
    default = _token_cli(issuer.url, issuer.directory, "--scope", "system/Patient.rs")
    assert verify(issuer, default.stdout.splitlines()[-1])["practice"] == "*"


def test_the_token_command_says_why_when_there_is_no_issuer(issuer: Issuer, tmp_path: Path):
    nobody = subprocess.run(
        [
            sys.executable,
            "-m",
            "tooling.token",
            "--issuer",
            "http://127.0.0.1:9",
            "--dir",
            str(issuer.directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert nobody.returncode == 1 and "does not answer" in nobody.stderr
    never = subprocess.run(
        [sys.executable, "-m", "tooling.token", "--issuer", issuer.url, "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert never.returncode == 1 and "make run" in never.stderr
