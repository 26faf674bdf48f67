"""The CloudEvents 1.0 structured JSON envelope of a resource change."""

from __future__ import annotations

import os
import uuid
from typing import Any

from shared.fhir import exact_json
from shared.fhir.dates import format_instant
from shared.fhir.lexical import ID_PATTERN, is_digits, is_type_name
from shared.fhir.store import Stored

SPEC_VERSION = "1.0"
_SEQUENCE_DIGITS = 19


def topic_for(prefix: str, resource_type: str) -> str:
    """`fhir.Patient` for prefix `fhir.`."""
    return f"{prefix}{resource_type}"


def event_type(stored: Stored) -> str:
    """`fhir.<Type>.created|updated|deleted`."""
    if stored.deleted:
        action = "deleted"
    elif stored.version_id == 1 or stored.method == "POST":
        action = "created"
    else:
        action = "updated"
    return f"fhir.{stored.type}.{action}"


def new_traceparent() -> str:
    """A fresh W3C traceparent, for changes that arrived without one."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def build_event(stored: Stored, *, source: str, max_data_bytes: int) -> dict[str, Any]:
    """The envelope; `data` is the full resource unless larger than `max_data_bytes`."""
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type(stored),
        "subject": f"{stored.type}/{stored.id}",
        "time": format_instant(stored.last_updated),
        "datacontenttype": "application/fhir+json",
        "versionid": str(stored.version_id),
    }
    if stored.resource is not None:
        size = len(exact_json.dumps(stored.resource))
        if size <= max_data_bytes:
            event["data"] = stored.resource
        else:
            # Consumers fetch the version over HTTP; the event still orders and dedupes.
            event["dataomitted"] = True
    return event


def with_sequence(payload: str, seq: int) -> bytes:
    """The stored envelope with its topic sequence number added, as the relay publishes it.

    `sequence` is the CloudEvents sequence extension: a string that orders lexicographically,
    hence zero-padded. The relay numbers events when it publishes them, so numbers follow
    publishing order and a replica can tell a lost event from a late one.
    """
    # The payload is an orjson-encoded object: splicing the attribute in before its closing
    # brace avoids decoding and encoding every event again.
    return f'{payload[:-1]},"sequence":"{seq:0{_SEQUENCE_DIGITS}d}"}}'.encode()


def sequence_of(event: dict[str, Any]) -> int | None:
    """The event's topic sequence number (None for events published before there was one)."""
    value = event.get("sequence")
    return int(value) if value is not None else None


class EnvelopeError(ValueError):
    """A message that is not one of our events (a poison message)."""


def parse_event(raw: bytes) -> dict[str, Any]:
    """Decode and check an envelope; anything malformed is an EnvelopeError."""
    try:
        event = exact_json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    for field in ("id", "type", "subject", "versionid"):
        if not isinstance(event.get(field), str) or not event[field]:
            raise EnvelopeError(f"the envelope has no '{field}'")
    try:
        canonical = str(uuid.UUID(event["id"]))
    except ValueError:
        raise EnvelopeError("the envelope id is not a UUID") from None
    if canonical != event["id"].lower():
        # processed_events keeps 36 characters: "{...}" or "urn:uuid:" forms would not fit.
        raise EnvelopeError("the envelope id is not a UUID in its canonical form")
    version = event["versionid"]
    if not (is_digits(version, 9) and int(version) > 0):
        raise EnvelopeError("versionid is not a positive number")
    sequence = event.get("sequence")
    if sequence is not None and not (
        isinstance(sequence, str) and is_digits(sequence, _SEQUENCE_DIGITS)
    ):
        raise EnvelopeError("sequence is not a number")
    parts = event["subject"].split("/")
    if len(parts) != 2 or not is_type_name(parts[0]) or not ID_PATTERN.fullmatch(parts[1]):
        raise EnvelopeError("subject is not Type/id")
    action = event["type"].rsplit(".", 1)[-1]
    if action not in ("created", "updated", "deleted") or event["type"] != (
        f"fhir.{parts[0]}.{action}"
    ):
        raise EnvelopeError(f"unknown event type '{event['type'][:100]}'")
    if action != "deleted" and event.get("data") is None and event.get("dataomitted") is not True:
        # A null `data` must never be taken for a deletion.
        raise EnvelopeError("a created/updated event carries no data")
    data = event.get("data") if action != "deleted" else None
    if data is not None and (
        not isinstance(data, dict)
        or data.get("resourceType") != parts[0]
        or data.get("id") != parts[1]
    ):
        raise EnvelopeError("data does not match the subject")
    return event
