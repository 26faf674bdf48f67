"""Test identities: a signing key the test services trust, tokens, and direct principals."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.auth.principal import Principal, current_principal, practices_from_claim
from shared.auth.scopes import Scopes

ISSUER = "https://issuer.kemdr.test"
AUDIENCE = "https://kemdr.test/fhir"
STAFF_SCOPE = "system/*.cruds system/Ops.r"


@cache
def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    """A test RSA key, made once per session and per name."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(name: str = "main") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    """The public JWK of a private key."""
    if isinstance(key, rsa.RSAPrivateKey):
        public = orjson.loads(RSAAlgorithm.to_jwk(key.public_key()))
        public["alg"] = "RS256"
    else:
        public = orjson.loads(ECAlgorithm.to_jwk(key.public_key()))
        public["alg"] = "ES384"
    return {**public, "kid": kid, "use": "sig"}


def jwks() -> str:
    """The JWKS the test services pin (settings `auth_jwks`)."""
    return orjson.dumps({"keys": [jwk(rsa_key(), "rsa-1"), jwk(ec_key(), "ec-1")]}).decode()


def auth_settings() -> dict[str, Any]:
    """Settings overrides that make a service trust the test issuer."""
    return {"auth_issuer": ISSUER, "auth_jwks": jwks(), "auth_audience": AUDIENCE}


def mint(
    scope: str = STAFF_SCOPE,
    practice: object = "*",
    *,
    user: str | None = None,
    lifetime: int = 3600,
    key: Any = None,
    kid: str = "rsa-1",
    alg: str = "RS256",
    **claims: Any,
) -> str:
    """A signed access token as an identity provider would issue it."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "test-client",
        "client_id": "test-client",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": scope,
    }
    if practice is not None:
        payload["practice"] = practice
    if user:
        payload["fhirUser"] = user
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    signing = key if key is not None else (ec_key() if alg == "ES384" else rsa_key())
    return jwt.encode(payload, signing, algorithm=alg, headers={"kid": kid})


def bearer(token: str | None = None, **kwargs: Any) -> dict[str, str]:
    """An Authorization header (a programme-wide staff token unless told otherwise)."""
    return {"Authorization": f"Bearer {token or mint(**kwargs)}"}


@cache
def staff_token() -> str:
    """A programme-wide token with every scope, shared by the suite's clients."""
    return mint(lifetime=6 * 3600)


def staff_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {staff_token()}"}


def principal(
    scope: str = "system/*.cruds",
    practice: object = "*",
    *,
    user: str | None = None,
    client_id: str = "test-client",
) -> Principal:
    """A caller as a verified token would describe it."""
    return Principal(
        client_id=client_id,
        subject=client_id,
        scopes=Scopes.parse(scope),
        practices=practices_from_claim(practice),
        fhir_user=user,
        source="127.0.0.1",
    )


@contextlib.contextmanager
def acting_as(who: Principal | None) -> Iterator[None]:
    """Run the block as `who` (in-process ASGI calls share the caller's context)."""
    token = current_principal.set(who)
    try:
        yield
    finally:
        current_principal.reset(token)


class StaffBearer(httpx.Auth):
    """Peer calls of in-process test services, with the suite's programme-wide token."""

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = f"Bearer {staff_token()}"
        yield request


def process_auth() -> dict[str, str]:
    """ServiceProcess settings that make a service process trust the test issuer."""
    return {key: str(value) for key, value in auth_settings().items()}


def token_for(who: Principal | None) -> str:
    """A signed token describing `who` (None: the suite's programme-wide staff token)."""
    if who is None:
        return staff_token()
    if who.practices is None:
        practice: object = "*"
    elif not who.practices:
        practice = None
    else:
        practice = sorted(who.practices) if len(who.practices) > 1 else next(iter(who.practices))
    return mint(
        " ".join(sorted(who.scopes.raw)),
        practice,
        user=who.fhir_user,
        client_id=who.client_id,
        sub=who.subject,
    )
