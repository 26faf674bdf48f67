"""Client authentication by `private_key_jwt`, as SMART Backend Services specifies it."""

from __future__ import annotations

import threading
import time

import jwt

from tooling.dev_issuer.state import Client, ClientRegistry, verification_key

ASSERTION_ALGS = ("RS384", "ES384")
# SMART: exp "no more than five minutes in the future".
MAX_LIFETIME_S = 300
# Clock difference tolerated between client and issuer.
LEEWAY_S = 30


class InvalidClient(Exception):
    """The client assertion does not authenticate a registered client."""


class ReplayCache:
    """Every jti seen, until its assertion would have expired anyway."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, client_id: str, jti: str, exp: float) -> bool:
        """Record the jti; False if it was already used within its lifetime."""
        now = time.time()
        with self._lock:
            self._seen = {k: v for k, v in self._seen.items() if v + LEEWAY_S >= now}
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = exp
            return True


def authenticate(
    assertion: str, clients: ClientRegistry, token_endpoint: str, replay: ReplayCache
) -> Client:
    """The registered client the assertion authenticates; raises InvalidClient otherwise."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidClient(f"the client assertion is not a JWT: {exc}") from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise InvalidClient(f"the assertion must be signed with {' or '.join(ASSERTION_ALGS)}")
    issuer = unverified.get("iss")
    client = clients.get(issuer) if isinstance(issuer, str) else None
    if client is None:
        raise InvalidClient("unknown client")
    jwk = client.keys.get(header.get("kid", ""))
    if jwk is None:
        raise InvalidClient("the assertion's kid names no key registered for this client")
    try:
        claims = jwt.decode(
            assertion,
            verification_key(jwk, alg),
            algorithms=[alg],
            audience=token_endpoint,
            issuer=client.client_id,
            leeway=LEEWAY_S,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidClient(f"client assertion refused: {exc}") from exc
    if claims["sub"] != client.client_id:
        raise InvalidClient("the assertion's sub must equal its iss, the client_id")
    exp = claims["exp"]
    if not isinstance(exp, int | float) or exp > time.time() + MAX_LIFETIME_S + LEEWAY_S:
        raise InvalidClient("the assertion's exp is more than five minutes ahead")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise InvalidClient("the assertion's jti must be a non-empty string")
    if not replay.first_use(client.client_id, jti, exp):
        raise InvalidClient("the assertion's jti was used already")
    return client
