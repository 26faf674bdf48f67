"""HTTP concerns of the FHIR API: formats, content types, body limits, base URLs, Prefer."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from shared.fhir import exact_json
from shared.fhir.errors import FHIRError
from shared.fhir.lexical import is_digits
from shared.fhir.validation import parse_json

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
XML_MARKERS = ("xml",)
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")
_SAFE_PREFIX = re.compile(r"^[A-Za-z0-9._~\-/]{0,255}$")


def fhir_response(
    body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A FHIR JSON response (an empty body when `body` is None)."""
    content = exact_json.dumps(body) if body is not None else b""
    return Response(
        content=content,
        status_code=status,
        headers=headers,
        media_type=f"{FHIR_JSON}; charset=utf-8" if body is not None else None,
    )


def check_accept(request: Request) -> None:
    """Refuse XML (406): we speak FHIR JSON only."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if "xml" in fmt.lower():
            raise FHIRError(
                406, "Only FHIR JSON is supported; _format=xml is not", code="not-supported"
            )
        if fmt.lower() not in ("json", "application/json", FHIR_JSON, "application/json+fhir"):
            raise FHIRError(406, f"_format={fmt} is not supported; use json", code="not-supported")
        return
    accept = request.headers.get("accept", "")
    if not accept:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(t in JSON_TYPES or t in ("*/*", "application/*") for t in types):
        return
    raise FHIRError(
        406, f"Cannot produce '{accept}': only {FHIR_JSON} is available", code="not-supported"
    )


# `_format` short names of the non-JSON media types an operation may offer.
FORMAT_NAMES = {"png": "image/png", "svg": "image/svg+xml"}


def negotiate(accept: str | None, format_param: str | None, offered: list[str]) -> str | None:
    """Which of `offered` (media types besides FHIR JSON) the client asked for; None: JSON.

    `_format` decides when given (`png`, `svg` or a full media type). Otherwise the Accept
    header's ranges are ranked by quality, then precision (`image/png` over `image/*` over
    `*/*`), then order: an offered type wins only by ranking above every JSON type, so a
    client listing FHIR JSON first, or only `*/*`, still gets JSON.
    """
    if format_param is not None:
        wanted = format_param.strip().lower()
        wanted = FORMAT_NAMES.get(wanted, wanted)
        return wanted if wanted in offered else None
    if not accept:
        return None
    ranges = _accept_ranges(accept)
    json_ranks = [rank for t in JSON_TYPES if (rank := _rank(ranges, t)) is not None]
    best_json = max(json_ranks, default=None)
    choice, choice_rank = None, best_json
    for media in offered:
        rank = _rank(ranges, media)
        if rank is not None and (choice_rank is None or rank > choice_rank):
            choice, choice_rank = media, rank
    return choice


def _accept_ranges(accept: str) -> list[tuple[str, float, int]]:
    """(media range, quality, position) of each Accept entry."""
    ranges = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in entry.split(";"))
        quality = 1.0
        for param in params:
            key, _, text = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(text)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality, position))
    return ranges


def _rank(ranges: list[tuple[str, float, int]], media: str) -> tuple[float, int, int] | None:
    """How the client ranks one media type: (quality, precision, -position); None: refused."""
    kind = media.split("/")[0]
    best = None
    for pattern, quality, position in ranges:
        precision = 2 if pattern == media else 1 if pattern == f"{kind}/*" else 0
        if precision == 0 and pattern != "*/*":
            continue
        # The most precise range that names the type gives its quality (RFC 9110 12.5.1).
        if best is None or (precision, -position) > (best[1], best[2]):
            best = (quality, precision, -position)
    return best if best is not None and best[0] > 0 else None


async def read_body(request: Request, max_bytes: int, allowed: set[str]) -> bytes:
    """The raw body after content-type (415) and size (413) checks."""
    declared = request.headers.get("content-length")
    if declared and is_digits(declared) and int(declared) > max_bytes:
        raise FHIRError(
            413, f"The body is larger than the limit of {max_bytes} bytes", code="too-costly"
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in allowed:
        raise FHIRError(
            415,
            f"Content-Type '{content_type or '(none)'}' is not accepted here; use "
            + " or ".join(sorted(allowed)),
            code="not-supported",
        )
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FHIRError(
                413, f"The body is larger than the limit of {max_bytes} bytes", code="too-costly"
            )
    return bytes(body)


async def read_json(request: Request, max_bytes: int, allowed: set[str] = JSON_TYPES) -> Any:
    """The parsed JSON body of a write."""
    return parse_json(await read_body(request, max_bytes, allowed))


def trusted(client: str | None, proxies: list[str]) -> bool:
    """Whether a peer address is one of the configured proxies (addresses or CIDR blocks)."""
    if not client or not proxies:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if address in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


def base_url(request: Request, base_path: str, trusted_proxies: list[str] | None = None) -> str:
    """The absolute FHIR base as the client sees it; X-Forwarded-* headers count only when
    the request came through a trusted proxy (anyone else could choose our Location)."""
    headers = request.headers
    client = request.client.host if request.client else None
    if not trusted(client, trusted_proxies or []):
        host = headers.get("host", "")
        host = host if _SAFE_HOST.match(host) else request.url.netloc
        return f"{request.url.scheme}://{host}{base_path}"
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if proto not in ("http", "https"):
        proto = request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip()
    if not _SAFE_HOST.match(host):
        host = headers.get("host", "") if _SAFE_HOST.match(headers.get("host", "")) else ""
        host = host or request.url.netloc
    prefix = headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
    if not _SAFE_PREFIX.match(prefix):
        prefix = ""
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return f"{proto}://{host}{prefix}{base_path}"


def prefer(request_headers: Any, name: str) -> str | None:
    """A Prefer header token's value, e.g. prefer(h, 'return') -> 'minimal'."""
    for part in request_headers.get("prefer", "").split(","):
        for item in part.split(";"):
            key, _, value = item.strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"').lower()
    return None
