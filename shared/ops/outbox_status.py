"""The outbox as the relay sees it: backlog, oldest unsent row, last error, sequences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.engine import Database
from shared.db.models import OutboxRow, RelayState, TopicSequence
from shared.fhir.dates import format_instant, utcnow


def outbox_status(database: Database) -> dict[str, Any]:
    """Backlog (in total and per topic), the oldest unsent row and its age, when a row was
    last sent, the relay's last recorded error, and the last sequence number per topic."""
    now = utcnow()
    with database.read() as session:
        unsent = OutboxRow.sent_at.is_(None)
        backlog, oldest = session.execute(
            select(func.count(), func.min(OutboxRow.created_at)).where(unsent)
        ).one()
        per_topic = session.execute(
            select(OutboxRow.topic, func.count()).where(unsent).group_by(OutboxRow.topic)
        ).all()
        last_sent = session.execute(select(func.max(OutboxRow.sent_at))).scalar_one()
        sequences = _sequences(session)
        state = session.execute(
            select(RelayState.last_error, RelayState.last_error_at).where(
                RelayState.name == "relay"
            )
        ).first()
    return {
        "backlog": int(backlog),
        "backlogByTopic": {topic: int(count) for topic, count in per_topic},
        "oldestUnsent": _instant(oldest),
        "oldestUnsentAgeSeconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
        "lastSent": _instant(last_sent),
        "lastError": state.last_error if state else None,
        "lastErrorAt": _instant(state.last_error_at) if state else None,
        "sequences": sequences,
    }


def _sequences(session: Session) -> dict[str, int]:
    """The last sequence number per topic, or per `topic[partition]` once sequences are
    numbered per partition."""
    table = TopicSequence.__table__
    partition = table.c.get("partition")
    columns = [table.c.topic, table.c.last_seq] + ([partition] if partition is not None else [])
    found = {}
    for row in session.execute(select(*columns).order_by(*columns[:1], *columns[2:])):
        key = row[0] if partition is None else f"{row[0]}[{row[2]}]"
        found[key] = int(row[1])
    return found


def _instant(moment: datetime | None) -> str | None:
    return format_instant(moment) if moment is not None else None


def describe_status(status: dict[str, Any]) -> list[str]:
    """The status as lines a person reads."""
    lines = [f"backlog: {status['backlog']} unsent row(s)"]
    for topic, count in status["backlogByTopic"].items():
        lines.append(f"  {topic}: {count}")
    if status["oldestUnsent"]:
        lines.append(
            f"oldest unsent: {status['oldestUnsent']} "
            f"({status['oldestUnsentAgeSeconds']:.0f} s ago)"
        )
    lines.append(f"last sent: {status['lastSent'] or 'never'}")
    if status["lastError"]:
        lines.append(f"last relay error: {status['lastError']} at {status['lastErrorAt']}")
    else:
        lines.append("last relay error: none recorded")
    lines.append("sequence per topic:" if status["sequences"] else "sequence per topic: none yet")
    for topic, seq in status["sequences"].items():
        lines.append(f"  {topic}: {seq}")
    return lines
