"""Fetching one Patient from an allowed EHR over HTTP, for `Patient/$import`.

Only FHIR bases on `INTAKE_EHR_SOURCES` are ever contacted: the URL a caller sends is compared
with that list and the request goes to the configured base, never to the caller's string.
Redirects are not followed (one could point anywhere). Every failure is a FHIRError naming the
source and never the patient: the EHR's answers are not echoed.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.intake.settings import EhrSource, IntakeSettings, normalise_base
from shared.auth.client_credentials import ClientCredentials, TokenError
from shared.auth.jwk import load_private_key
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.json_body import loads as strict_json
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Answers worth another try: the EHR is busy or briefly broken.
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
# A Retry-After this long is not waited for anywhere in a request.
_MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True)
class FetchedPatient:
    """The one Patient an EHR holds under an identifier, without its id and meta."""

    source: str
    system: str
    value: str
    resource: dict[str, Any]


def split_identifier(text: str) -> tuple[str, str]:
    """`system|value` as its two parts; both are needed to match a patient unambiguously."""
    system, bar, value = text.partition("|")
    if not bar or not system or not value:
        raise bad_request("'identifier' must be given as system|value", ["identifier"])
    return system, value


def identifier_token(system: str, value: str) -> str:
    """The `identifier` search value selecting exactly system|value."""

    def escaped(text: str) -> str:
        # FHIR search escapes: a backslash before `\`, `,`, `$` and `|` inside a value.
        for char in ("\\", ",", "$", "|"):
            text = text.replace(char, "\\" + char)
        return text

    return f"{escaped(system)}|{escaped(value)}"


def _error(status: int, source: str, what: str, code: str = "transient") -> FHIRError:
    return FHIRError(
        status, f"Import from the EHR at {source}: {what}; nothing was stored", code=code
    )


# SMART clients per source, kept so their access tokens are reused between imports.
_smart_clients: dict[tuple[str, str], ClientCredentials] = {}


def _auth(source: str, config: EhrSource) -> httpx.Auth | None:
    """How requests to this source authenticate (FHIRError 502 when it cannot)."""
    if config.auth == "none":
        return None
    if config.auth == "bearer":
        if config.token_env:
            token = os.environ.get(config.token_env, "").strip()
        else:
            try:
                token = Path(config.token_file).read_text().strip()
            except OSError:
                token = ""
        if not token:
            # Our configuration is at fault, not the EHR; the setting is named, not its value.
            raise _error(502, source, "its bearer token is not available (INTAKE_EHR_SOURCES)")
        return _Bearer(token)
    key = (source, config.model_dump_json())
    client = _smart_clients.get(key)
    if client is None:
        try:
            private_key = load_private_key(Path(config.key_file))
        except (OSError, ValueError):
            raise _error(
                502, source, "its client key cannot be read (INTAKE_EHR_SOURCES)"
            ) from None
        client = ClientCredentials(
            config.client_id,
            private_key,
            issuer=config.issuer,
            token_endpoint=config.token_endpoint,
            scope=config.scope,
        )
        _smart_clients[key] = client
    return client


class _Bearer(httpx.Auth):
    """A static bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date)."""
    raw = headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return min(float(raw), _MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return min(max(when.timestamp() - time.time(), 0.0), _MAX_RETRY_AFTER_S)


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes | None  # None: larger than allowed
    attempts: int = 1


async def _get(client: httpx.AsyncClient, url: str, params: dict[str, str], limit: int) -> _Answer:
    """One GET, reading at most `limit` bytes of the body."""
    async with client.stream("GET", url, params=params) as response:
        if response.status_code != 200:
            return _Answer(response.status_code, response.headers, b"")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                return _Answer(200, response.headers, None)
            chunks.append(chunk)
        return _Answer(200, response.headers, b"".join(chunks))


async def _fetch(
    source: str, config: EhrSource, system: str, value: str, settings: IntakeSettings
) -> _Answer:
    """GET [source]/Patient?identifier=..., retried on 429 and 5xx within the deadline."""
    deadline = time.monotonic() + settings.ehr_deadline_s
    params = {"identifier": identifier_token(system, value)}
    # No redirects (they could lead off the allow-list); no environment proxies or .netrc
    # (the allow-list alone says where requests go and what they carry).
    async with httpx.AsyncClient(
        auth=_auth(source, config),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.ehr_timeout_s),
        headers={"Accept": "application/fhir+json"},
    ) as client:
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                # httpx times each read; this bounds the whole answer (a slow trickle too).
                answer = await asyncio.wait_for(
                    _get(client, f"{source}/Patient", params, settings.ehr_max_response_bytes),
                    timeout=max(remaining, 0.001),
                )
            except (TimeoutError, httpx.TimeoutException):
                raise _error(504, source, "the EHR did not answer in time", "timeout") from None
            except TokenError:
                raise _error(502, source, "no access token could be obtained for it") from None
            except httpx.TransportError as exc:
                raise _error(
                    502, source, f"the EHR could not be reached ({type(exc).__name__})"
                ) from None
            answer.attempts = attempt
            if answer.status not in _RETRYABLE or attempt >= settings.ehr_max_attempts:
                return answer
            backoff = settings.ehr_backoff_s * 2 ** (attempt - 1)
            wait = max(backoff, retry_after(answer.headers) or 0.0)
            if time.monotonic() + wait >= deadline:
                # Waiting would outlast the deadline: say so now rather than sleep in vain.
                return answer
            log.info("EHR %s answered %s; retrying in %.2fs", source, answer.status, wait)
            await asyncio.sleep(wait)


def _checked_answer(source: str, answer: _Answer) -> dict[str, Any]:
    """The searchset Bundle of a 200 answer; any other answer is a 502 saying what came."""
    status = answer.status
    if 300 <= status < 400:
        raise _error(502, source, f"the EHR answered a redirect ({status}), which is not followed")
    if status in (401, 403):
        raise _error(502, source, f"the EHR refused this service's credentials ({status})")
    if status == 404:
        # A search that matches nothing is a 200 with an empty Bundle: a 404 means there is
        # no Patient endpoint at this base, a configuration fault rather than the request's.
        raise _error(502, source, "the EHR has no Patient search at this base (404)")
    if status in _RETRYABLE:
        raise _error(502, source, f"the EHR still answered {status} after {answer.attempts} tries")
    if status != 200:
        raise _error(502, source, f"the EHR answered {status}")
    if answer.body is None:
        raise _error(502, source, "the EHR's answer is larger than INTAKE_EHR_MAX_RESPONSE_BYTES")
    try:
        bundle = strict_json(answer.body)
    except FHIRError:
        raise _error(502, source, "the EHR's answer is not JSON", "structure") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _error(502, source, "the EHR's answer is not a FHIR Bundle", "structure")
    return bundle


def _the_patient(source: str, bundle: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    """The single matching Patient of a searchset: none 422, several 409."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise _error(502, source, "the EHR's Bundle.entry is not a list", "structure")
    patients = [
        entry["resource"]
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") == "Patient"
        # Included resources are not matches (a search without a mode is taken as matches).
        and (entry.get("search") or {}).get("mode", "match") == "match"
    ]
    total = bundle.get("total")
    if len(patients) > 1 or (isinstance(total, int) and total > 1):
        raise _error(409, source, "several patients at the EHR carry that identifier", "conflict")
    if not patients:
        raise _error(422, source, "no patient at the EHR carries that identifier", "not-found")
    patient = patients[0]
    # An EHR that ignored the identifier parameter must not get another patient imported
    # (and a later import of the same identifier would then create a duplicate).
    identifiers = patient.get("identifier")
    if not isinstance(identifiers, list) or not any(
        isinstance(i, dict) and i.get("system") == system and i.get("value") == value
        for i in identifiers
    ):
        raise _error(502, source, "the EHR returned a Patient that does not carry that identifier")
    # Its id and meta are the EHR's; ours are given when it is stored.
    return {k: v for k, v in patient.items() if k not in ("id", "meta")}


async def fetch_patient(inputs: dict[str, list[Any]], settings: ServiceSettings) -> FetchedPatient:
    """The `prepare` step of `$import`: the allow-list check, then the fetch."""
    source = normalise_base(inputs["source"][0])
    system, value = split_identifier(inputs["identifier"][0])
    # A service built with other settings imports from nowhere.
    config = settings.ehr_sources.get(source) if isinstance(settings, IntakeSettings) else None
    if config is None:
        # Checked before any connection is opened: a caller cannot make this service probe
        # addresses of its choosing.
        raise FHIRError(
            422,
            f"The source {source[:200]} is not one of the EHRs this service imports from "
            "(INTAKE_EHR_SOURCES); nothing was fetched",
            code="security",
            expression=["source"],
        )
    assert isinstance(settings, IntakeSettings)
    answer = await _fetch(source, config, system, value, settings)
    bundle = _checked_answer(source, answer)
    return FetchedPatient(source, system, value, _the_patient(source, bundle, system, value))
