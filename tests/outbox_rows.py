"""Outbox rows of resource changes: the audit trail's own events (every write makes one)
are covered by tests/test_audit_kafka.py and left aside by the others."""

from __future__ import annotations

from shared.db.models import OutboxRow

RESOURCE_EVENTS = ~OutboxRow.topic.endswith(".AuditEvent")
