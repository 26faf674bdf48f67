"""The audit trail: every access to patient data becomes a FHIR AuditEvent.

Writes are recorded in their own transaction by a store hook, so a write and its record
commit or roll back together. Everything else (reads, searches, refused requests) is
spooled durably before the response starts and drained into AuditEvents in the background.
Reads of AuditEvent itself are not recorded. Writes with no request (event reactions) are
recorded with the service as the agent; replica copies (`put_version`) are not accesses.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.audit_event import audit_event
from shared.auth.audit_logs import install_log_redaction
from shared.auth.audit_record import (
    Access,
    classify,
    current_access,
    patient_of,
    query_patients,
    request_id,
)
from shared.auth.audit_spool import Drainer, Spooler
from shared.auth.principal import current_principal
from shared.auth.scopes import WRITE_INTERACTIONS
from shared.fhir import exact_json
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import issue, operation_outcome
from shared.fhir.rest.context import FHIRContext
from shared.fhir.store import Stored
from shared.observability.metrics import AUDIT_WRITES

log = logging.getLogger(__name__)

# Noted in a write session's info when it recorded an audited write.
AUDITED = "audited_writes"


class AuditTrail:
    """Pure ASGI middleware: notes each FHIR request's access, spools it before the response.

    Must be the outermost application middleware, so refusals by the authentication layer
    (401/403) pass through it; the caller is read when the response starts, inside that layer.
    """

    def __init__(self, app: ASGIApp, *, base_path: str, spooler: Spooler) -> None:
        self.app = app
        self.base = base_path.rstrip("/")
        self.spooler = spooler

    def _access(self, scope: Scope) -> Access | None:
        if scope["type"] != "http" or not scope["path"].startswith(self.base):
            return None
        path: str = scope["path"]
        method: str = scope["method"]
        found = classify(method, path[len(self.base) :].strip("/").split("/"))
        if found is None:
            return None
        subtype, res_type, res_id = found
        query = scope.get("query_string", b"").decode("latin-1")
        headers = dict(scope["headers"])
        client = scope.get("client")
        access = Access(
            method=method,
            path=path,
            query=query,
            source=client[0] if client else None,
            request_id=request_id(headers.get(b"x-request-id"), uuid.uuid4().hex),
            subtype=subtype,
            res_type=res_type,
            res_id=res_id,
        )
        if res_type == "Patient" and res_id is not None:
            access.touched(None, f"Patient/{res_id}")
        for patient in query_patients(res_type, query) if query else ():
            access.touched(patient, patient)
        return access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        access = self._access(scope)
        if access is None:
            await self.app(scope, receive, send)
            return
        started = unrecorded = False

        async def audited_send(message: Message) -> None:
            nonlocal started, unrecorded
            if unrecorded:
                return  # the planned response is replaced by the 503 already sent
            if message["type"] == "http.response.start":
                started = True
                try:
                    await self._record(access, message["status"])
                except Exception as exc:
                    # No answer leaves unrecorded; the client may retry (the database is
                    # the likely cause, and it is what the 503 of a request says too).
                    log.error("audit record not written (%s): answering 503", type(exc).__name__)
                    unrecorded = True
                    await _unavailable(send)
                    return
            await send(message)

        token = current_access.set(access)
        try:
            await self.app(scope, receive, audited_send)
        except BaseException:
            if not started:
                await self._record(access, 500)
            raise
        finally:
            current_access.reset(token)

    async def _record(self, access: Access, status: int) -> None:
        # Here, inside the authentication layer's context, the caller is known.
        access.caller(current_principal.get())
        access.status = status
        if status < 400 and access.audited_writes and access.subtype in WRITE_INTERACTIONS.values():
            return  # a plain write: recorded in its own transaction (a Bundle may also read)
        if access.res_type is not None and access.res_id is not None and not access.entities:
            access.touched(f"{access.res_type}/{access.res_id}", None)
        access.recorded = format_instant(utcnow())
        await self.spooler.put(access)


async def _unavailable(send: Send) -> None:
    body = exact_json.dumps(
        operation_outcome(
            [issue("error", "transient", "The audit trail is unavailable; retry later")]
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"5"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class WriteAuditor:
    """Store hooks: record each write in its transaction, note what reads touch."""

    def __init__(self, context: FHIRContext) -> None:
        self.context = context
        self.service = context.registry.service

    def on_write(self, session: Session, stored: Stored) -> None:
        request = current_access.get()
        access = Access(
            method=request.method if request else "",
            path=request.path if request else "",
            query=request.query if request else "",
            source=request.source if request else None,
            request_id=request.request_id if request else "",
            subtype=WRITE_INTERACTIONS.get(stored.method, "update"),
            status=201 if stored.version_id == 1 else 200,
            recorded=format_instant(utcnow()),
        )
        if stored.deleted:
            access.subtype = "delete"
        access.caller(current_principal.get())
        access.touched(
            f"{stored.type}/{stored.id}/_history/{stored.version_id}",
            patient_of(stored.type, stored.id, stored.resource),
        )
        self.context.store.create(session, "AuditEvent", audit_event(access, self.service))
        session.info[AUDITED] = session.info.get(AUDITED, 0) + 1
        AUDIT_WRITES.labels(self.service, "write").inc()

    @staticmethod
    def on_read(stored: Stored) -> None:
        access = current_access.get()
        if access is not None:
            reference = f"{stored.type}/{stored.id}/_history/{stored.version_id}"
            access.touched(reference, patient_of(stored.type, stored.id, stored.resource))

    @staticmethod
    def on_results(resources: list[dict[str, Any]]) -> None:
        """Note the patients whose data a search or history page hands out (BALP: the query
        and the patients it concerns; not every resource, which could be hundreds)."""
        access = current_access.get()
        if access is None:
            return
        for resource in resources:
            res_type, res_id = resource.get("resourceType"), resource.get("id")
            if isinstance(res_type, str) and isinstance(res_id, str):
                access.touched(None, patient_of(res_type, res_id, resource))

    @staticmethod
    def after_commit(info: dict[str, Any]) -> None:
        access = current_access.get()
        if access is not None and info.get(AUDITED):
            access.audited_writes += info[AUDITED]


def install_audit_trail(app: FastAPI, context: FHIRContext) -> None:
    """Audit every access of `app`: store hooks, the spooling middleware, the drainer."""
    install_log_redaction()
    auditor = WriteAuditor(context)
    context.store.write_hooks.append(auditor.on_write)
    context.store.read_hooks.append(auditor.on_read)
    context.interactions.result_hooks.append(auditor.on_results)
    context.database.after_commit.append(auditor.after_commit)
    spooler = Spooler(context.database)
    drainer = Drainer(context.database, context.store, context.registry.service)
    # Not woken per spooled read: draining once a second makes big batches, and the drain's
    # CPU then competes less with the requests it audits.
    app.state.audit = drainer
    app.add_middleware(AuditTrail, base_path=context.settings.base_path, spooler=spooler)
    app.router.lifespan_context = _with_drainer(app.router.lifespan_context, spooler, drainer)


def _with_drainer(
    inner: Callable[[Any], AbstractAsyncContextManager[Any]], spooler: Spooler, drainer: Drainer
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The app's lifespan with the drainer running inside it (stopped before the database)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with inner(app):
            await drainer.start()
            try:
                yield
            finally:
                await asyncio.to_thread(spooler.stop)
                await drainer.stop()

    return lifespan
