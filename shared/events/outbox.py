"""Write one outbox row per committed change, inside the change's own transaction."""

from __future__ import annotations

import re
from contextvars import ContextVar

from sqlalchemy import insert
from sqlalchemy.orm import Session

from shared.db.models import OutboxRow
from shared.events.envelope import build_event, new_traceparent, topic_for
from shared.fhir.dates import utcnow
from shared.fhir.registry import Registry
from shared.fhir.store import Stored, pending_rows
from shared.observability.tracing import active_traceparent

# The incoming request's traceparent, so events continue the caller's trace.
current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)

# W3C Trace Context: version-traceid-parentid-flags, lower-case hex; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def valid_traceparent(value: str | None) -> str | None:
    """The header when it is a well-formed W3C traceparent (version ff is invalid), else None."""
    if value is None:
        return None
    value = value.strip()
    if not _TRACEPARENT.match(value) or value.startswith("ff-"):
        return None
    return value


_INSERT_OUTBOX = insert(OutboxRow.__table__)
# The session.info key the outbox sets when a transaction wrote events.
EVENTS_WRITTEN = "events_written"


def _insert_outbox(session: Session, row: dict) -> None:
    # Inside a create, the row joins the create's own rows: one round trip for them all.
    pending = pending_rows(session)
    if pending is not None:
        pending.append((OutboxRow.__table__, [row]))
    else:
        session.connection().execute(_INSERT_OUTBOX, row)


class Outbox:
    """The outbox step of every write: records events for the owned types only (replicas
    never republish)."""

    def __init__(
        self, registry: Registry, *, source: str, topic_prefix: str, max_data_bytes: int
    ) -> None:
        self.registry = registry
        self.source = source
        self.topic_prefix = topic_prefix
        self.max_data_bytes = max_data_bytes

    def __call__(self, session: Session, stored: Stored) -> None:
        if not self.registry.owns(stored.type):
            return
        # The unit of work wakes the relay once this transaction commits.
        session.info[EVENTS_WRITTEN] = True
        event = build_event(stored, source=self.source, max_data_bytes=self.max_data_bytes)
        _insert_outbox(
            session,
            {
                "event_id": event.id,
                "topic": topic_for(self.topic_prefix, stored.type),
                "key": event.subject,
                "event_type": event.type,
                "payload": event.to_json(),
                # The span in progress (tracing on), else the caller's header; a malformed
                # header starts a new trace rather than failing the write.
                "traceparent": active_traceparent()
                or valid_traceparent(current_traceparent.get())
                or new_traceparent(),
                "created_at": utcnow(),
            },
        )
