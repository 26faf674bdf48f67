"""The CloudEvents 1.0 structured JSON envelope of a resource change."""

from __future__ import annotations

import os
import uuid
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.fhir import exact_json
from shared.fhir.dates import format_instant
from shared.fhir.lexical import ID_PATTERN, is_digits, is_type_name
from shared.fhir.store import Stored

SPEC_VERSION = "1.0"
_ACTIONS = ("created", "updated", "deleted")
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


class EnvelopeError(ValueError):
    """A message that is not one of our events (a poison message)."""


class ResourceEvent(BaseModel):
    """A resource change as a CloudEvents 1.0 structured JSON event, checked on parsing.

    Strict: attributes must have their JSON types (a `"true"` is no boolean). Unknown
    attributes (other CloudEvents extensions) are kept.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    specversion: str = SPEC_VERSION
    id: str
    source: str = ""
    type: str
    subject: str
    time: str | None = None
    datacontenttype: str = "application/fhir+json"
    versionid: str
    # The partition's sequence number (the CloudEvents sequence extension), set by the relay.
    sequence: str | None = None
    data: dict[str, Any] | None = None
    dataomitted: bool | None = None
    # The Kafka partition the event came from, set by the consumer (never from the wire):
    # sequence numbers count per partition.
    partition: int | None = Field(default=None, exclude=True)

    @field_validator("id")
    @classmethod
    def _canonical_uuid(cls, value: str) -> str:
        try:
            canonical = str(uuid.UUID(value))
        except ValueError:
            raise ValueError("the envelope id is not a UUID") from None
        if canonical != value.lower():
            # processed_events keeps 36 characters: "{...}" or "urn:uuid:" would not fit.
            raise ValueError("the envelope id is not a UUID in its canonical form")
        return value

    @field_validator("versionid")
    @classmethod
    def _positive_version(cls, value: str) -> str:
        if not (is_digits(value, 9) and int(value) > 0):
            raise ValueError("versionid is not a positive number")
        return value

    @field_validator("sequence")
    @classmethod
    def _sequence_digits(cls, value: str | None) -> str | None:
        if value is not None and not is_digits(value, _SEQUENCE_DIGITS):
            raise ValueError("sequence is not a number")
        return value

    @field_validator("subject")
    @classmethod
    def _type_slash_id(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) != 2 or not is_type_name(parts[0]) or not ID_PATTERN.fullmatch(parts[1]):
            raise ValueError("subject is not Type/id")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ResourceEvent:
        if self.type != f"fhir.{self.res_type}.{self.action}" or self.action not in _ACTIONS:
            raise ValueError(f"unknown event type '{self.type[:100]}'")
        if not self.deleted and self.data is None and self.dataomitted is not True:
            # A null `data` must never be taken for a deletion.
            raise ValueError("a created/updated event carries no data")
        if (
            not self.deleted
            and self.data is not None
            and (
                self.data.get("resourceType") != self.res_type or self.data.get("id") != self.res_id
            )
        ):
            raise ValueError("data does not match the subject")
        return self

    @property
    def res_type(self) -> str:
        return self.subject.split("/", 1)[0]

    @property
    def res_id(self) -> str:
        return self.subject.split("/", 1)[1]

    @property
    def action(self) -> str:
        """created, updated or deleted."""
        return self.type.rsplit(".", 1)[-1]

    @property
    def deleted(self) -> bool:
        return self.action == "deleted"

    @property
    def version(self) -> int:
        return int(self.versionid)

    @property
    def seq(self) -> int | None:
        """The topic sequence number (None for events published before there was one)."""
        return int(self.sequence) if self.sequence is not None else None

    @property
    def complete(self) -> bool:
        """Whether it can be applied as it is (a deletion, or the resource is carried)."""
        return self.deleted or self.data is not None

    def with_data(self, data: dict[str, Any]) -> ResourceEvent:
        """The same event carrying the resource an id-only event left out."""
        return self.model_copy(update={"data": data})

    def to_json(self) -> str:
        """The envelope as JSON text (decimals exact)."""
        return exact_json.dumps_text(self.model_dump(exclude_none=True))


def build_event(stored: Stored, *, source: str, max_data_bytes: int) -> ResourceEvent:
    """The event of a stored change; `data` is the resource unless over `max_data_bytes`."""
    data: dict[str, Any] | None = None
    omitted: bool | None = None
    if stored.resource is not None:
        if len(exact_json.dumps(stored.resource)) <= max_data_bytes:
            data = stored.resource
        else:
            # Consumers fetch the version over HTTP; the event still orders and dedupes.
            omitted = True
    # Built from a stored version, so already valid: no validation on the write path.
    return ResourceEvent.model_construct(
        specversion=SPEC_VERSION,
        id=str(uuid.uuid4()),
        source=source,
        type=event_type(stored),
        subject=f"{stored.type}/{stored.id}",
        time=format_instant(stored.last_updated),
        datacontenttype="application/fhir+json",
        versionid=str(stored.version_id),
        sequence=None,
        data=data,
        dataomitted=omitted,
    )


def with_sequence(payload: str, seq: int) -> bytes:
    """The stored envelope with its topic sequence number added, as the relay publishes it.

    `sequence` is the CloudEvents sequence extension: a string that orders lexicographically,
    hence zero-padded. The relay numbers events when it publishes them, so numbers follow
    publishing order and a replica can tell a lost event from a late one.
    """
    # The payload is an orjson-encoded object: splicing the attribute in before its closing
    # brace avoids decoding and encoding every event again.
    return f'{payload[:-1]},"sequence":"{seq:0{_SEQUENCE_DIGITS}d}"}}'.encode()


def parse_event(raw: bytes) -> ResourceEvent:
    """Decode and check an envelope; anything malformed is an EnvelopeError."""
    try:
        decoded = exact_json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    return event_from(decoded)


def event_from(decoded: dict[str, Any]) -> ResourceEvent:
    """Check an envelope already decoded; anything malformed is an EnvelopeError."""
    if "partition" in decoded:  # the consumer's to set, from the record
        decoded = {k: v for k, v in decoded.items() if k != "partition"}
    try:
        return ResourceEvent.model_validate(decoded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the envelope"
        raise EnvelopeError(f"{where}: {first['msg']}"[:300]) from None
