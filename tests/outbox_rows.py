"""Outbox rows of resource changes: the audit trail's own events (every write makes one)
are covered by tests/test_audit_kafka.py and left aside by the others."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from shared.db.models import OutboxRow

RESOURCE_EVENTS = ~OutboxRow.topic.endswith(".AuditEvent")


def events_of(client: httpx.AsyncClient, res_type: str) -> list[dict[str, Any]]:
    """The resource events of `res_type` in an in-process service's outbox, oldest first."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as db:
        rows = db.execute(
            select(OutboxRow)
            .where(RESOURCE_EVENTS, OutboxRow.topic.endswith(f".{res_type}"))
            .order_by(OutboxRow.pk)
        )
        return [json.loads(row.payload) for row in rows.scalars()]
