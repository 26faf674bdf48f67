"""Reading outcomes' timeline tables behind a test client."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Table, select


def rows(client: httpx.AsyncClient, table: Table) -> list[dict[str, Any]]:
    """Every row of a timeline table in the client's service database, by key order."""
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    key = next(iter(table.primary_key.columns))
    with context.database.read() as session:
        found = session.execute(select(table).order_by(key)).mappings().all()
    return [dict(row) for row in found]
