"""Bearer token verification: signature, issuer, audience and times, then the caller."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Protocol

import jwt
from jwt import PyJWK

from shared.auth.keys import KeysUnavailable
from shared.auth.principal import Principal, practices_from_claim
from shared.auth.scopes import Scopes

# RS256 and ES384 only: HS* would let anyone holding a shared secret mint tokens, and
# `none` is no signature at all.
ALGORITHMS = ("RS256", "ES384")
_CACHE_SIZE = 4096


class InvalidToken(Exception):
    """A token that must be refused with 401 `invalid_token`; the message says why."""


class KeySource(Protocol):
    async def key(self, kid: str | None) -> PyJWK: ...

    def known(self, kid: str | None) -> PyJWK | None: ...

    def metadata(self) -> dict[str, Any]: ...


class TokenVerifier:
    """Verify JWT access tokens of one issuer and turn their claims into a Principal."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        practice_claim: str = "practice",
        clock_skew_s: int = 60,
        max_token_bytes: int = 16_384,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.practice_claim = practice_claim
        self.clock_skew_s = clock_skew_s
        self.max_token_bytes = max_token_bytes
        # Verified tokens by digest: clients reuse a token for minutes, and a signature
        # check costs more than the read it guards. Entries expire with the token.
        self._verified: OrderedDict[bytes, tuple[float, dict[str, Any], PyJWK]] = OrderedDict()

    async def verify(self, token: str, audiences: set[str]) -> dict[str, Any]:
        """The claims of a valid token meant for one of `audiences`; InvalidToken if not."""
        if len(token) > self.max_token_bytes:
            raise InvalidToken(f"the token is longer than {self.max_token_bytes} bytes")
        digest = hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=20).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            expires, claims, key = cached
            # Still the issuer's key for that kid: a key retired since stops its tokens.
            current = self.keys.known(key.key_id)
            live = time.time() < expires + self.clock_skew_s and current is key
            if live and _audience_ok(claims, audiences):
                self._verified.move_to_end(digest)
                return claims
            if not live:
                del self._verified[digest]
        claims, key = await self._verify(token, audiences)
        self._verified[digest] = (float(claims["exp"]), claims, key)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str, audiences: set[str]) -> tuple[dict[str, Any], PyJWK]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"tokens signed with '{str(alg)[:16]}' are not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's kid is not a string")
        try:
            key = await self.keys.key(kid)
        except KeysUnavailable as exc:
            raise InvalidToken(f"no signing key to check the token with: {exc}") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=sorted(audiences),
                issuer=self.issuer,
                leeway=self.clock_skew_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is meant for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token comes from another issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token has no '{exc.claim}' claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("the token is malformed") from None
        if not isinstance(claims.get("sub", ""), str):
            raise InvalidToken("the token's sub is not a string")
        return claims, key

    def principal(self, claims: dict[str, Any], source: str | None) -> Principal:
        """The caller a verified token describes."""
        client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub") or ""
        fhir_user = claims.get("fhirUser")
        return Principal(
            client_id=str(client_id)[:256],
            subject=str(claims.get("sub", ""))[:256],
            scopes=Scopes.parse(claims.get("scope") or claims.get("scp")),
            practices=practices_from_claim(claims.get(self.practice_claim)),
            fhir_user=fhir_user if isinstance(fhir_user, str) else None,
            token_id=str(claims["jti"])[:256] if "jti" in claims else None,
            source=source,
        )


def _audience_ok(claims: dict[str, Any], audiences: set[str]) -> bool:
    aud = claims.get("aud")
    values = {aud} if isinstance(aud, str) else set(aud or [])
    return bool(values & audiences)
