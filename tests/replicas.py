"""Another service's resources put straight into a test service's replica tables."""

from __future__ import annotations

import httpx

from shared.events.replica import ReplicaWriter


def replicate(client: httpx.AsyncClient, res_type: str, res_id: str, body: dict, version=1):
    """Store another service's version in this replica, as its events would."""
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        content = {**body, "id": res_id}
        assert ReplicaWriter(context.store).put_version(session, res_type, res_id, version, content)
