"""The issuer's signing keys: discovered from its metadata, cached, refetched on rotation."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

log = logging.getLogger(__name__)

METADATA_PATHS = ("/.well-known/smart-configuration", "/.well-known/openid-configuration")


class KeysUnavailable(Exception):
    """No key could be had for a token (issuer unreachable, unknown `kid`)."""


def key_set(document: Any) -> dict[str | None, PyJWK]:
    """The usable signing keys of a JWKS document, by `kid` (unusable ones are skipped)."""
    keys: dict[str | None, PyJWK] = {}
    try:
        for key in PyJWKSet.from_dict(document).keys:
            keys[key.key_id] = key
    except (PyJWKSetError, PyJWKError, TypeError, ValueError) as exc:
        raise KeysUnavailable(f"the JWKS holds no usable key: {exc}") from None
    return keys


class _Keys:
    """Signing keys by `kid`; a token without a `kid` may use the only key there is."""

    keys: dict[str | None, PyJWK]

    def known(self, kid: str | None) -> PyJWK | None:
        """The key for `kid` held now, without fetching."""
        if kid in self.keys:
            return self.keys[kid]
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return None


class StaticKeys(_Keys):
    """Keys pinned in configuration (a JWKS document): no discovery, no refetch."""

    def __init__(self, document: Any) -> None:
        self.keys = key_set(document)

    async def key(self, kid: str | None) -> PyJWK:
        """The key for `kid`; KeysUnavailable when not pinned."""
        found = self.known(kid)
        if found is None:
            raise KeysUnavailable(f"no pinned key has kid '{(kid or '')[:64]}'")
        return found

    def metadata(self) -> dict[str, Any]:
        return {}


class IssuerKeys(_Keys):
    """The JWKS of an issuer, found through its SMART/OpenID metadata.

    Keys are cached; an unknown `kid` triggers a refetch (a rotation), at most once per
    `min_refresh_s`, so forged `kid`s cannot make us hammer the issuer. When the issuer is
    down the cached keys keep working.
    """

    def __init__(
        self,
        issuer: str,
        *,
        min_refresh_s: float = 60.0,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self.transport = transport
        self.keys: dict[str | None, PyJWK] = {}
        self._metadata: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def metadata(self) -> dict[str, Any]:
        """The issuer's metadata as last fetched (empty before the first fetch)."""
        return self._metadata

    async def key(self, kid: str | None) -> PyJWK:
        """The key for `kid`, refetching the JWKS once if it is unknown."""
        found = self.known(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self.known(kid)  # another request may have refetched meanwhile
            if found is None and time.monotonic() - self._fetched_at >= self.min_refresh_s:
                await self._refresh()
                found = self.known(kid)
        if found is None:
            raise KeysUnavailable(f"the issuer has no key with kid '{(kid or '')[:64]}'")
        return found

    async def _refresh(self) -> None:
        # Counted as an attempt even if it fails: a down issuer is asked once a period.
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(
                transport=self.transport, timeout=self.timeout_s, follow_redirects=False
            ) as client:
                metadata = await self._discover(client)
                response = await client.get(metadata["jwks_uri"])
                response.raise_for_status()
                keys = key_set(orjson.loads(response.content))
        except (httpx.HTTPError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("could not fetch the issuer's keys (%s); keeping cached keys", exc)
            return
        except KeysUnavailable as exc:
            log.warning("the issuer's JWKS is unusable (%s); keeping cached keys", exc)
            return
        self._metadata, self.keys = metadata, keys

    async def _discover(self, client: httpx.AsyncClient) -> dict[str, Any]:
        last: Exception | None = None
        for path in METADATA_PATHS:
            try:
                response = await client.get(self.issuer + path)
                if response.status_code == 200:
                    metadata = orjson.loads(response.content)
                    if isinstance(metadata, dict) and isinstance(metadata.get("jwks_uri"), str):
                        return metadata
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                last = exc
        raise KeyError(f"no metadata with a jwks_uri at {self.issuer} ({last})")
