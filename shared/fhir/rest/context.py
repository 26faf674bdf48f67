"""What every handler gets: the service's FHIR context, the resource type, units of work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.db.engine import CLIENT_GONE, Database, QueryGuard
from shared.fhir.http import base_url
from shared.fhir.interactions import Interactions
from shared.fhir.registry import Registry
from shared.fhir.rules import MissingReplica
from shared.fhir.store import ResourceStore
from shared.fhir.transaction_bundles import BundleProcessor
from shared.settings import ServiceSettings


@dataclass
class FHIRContext:
    """Everything the routes need, built once per app by create_service_app."""

    settings: ServiceSettings
    registry: Registry
    database: Database
    store: ResourceStore
    interactions: Interactions
    bundles: BundleProcessor
    version: str
    # Fetches a replicated resource from its owner into the replica: True when it did (the
    # event runtime's fetch_replica; None: writes needing a missing replica are refused).
    fetch_replica: Callable[[str, str], Awaitable[bool]] | None = None

    def base(self, request: Request) -> str:
        """The absolute FHIR base as this request's client sees it."""
        return base_url(request, self.settings.base_path, self.settings.trusted_proxies)

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(session, ...)` in a unit of work (commits, then wakes the relay)."""

        def work() -> Any:
            with self.database.write() as session:
                return fn(session, *args, **kwargs)

        return await self.with_replicas(run_in_threadpool, work)

    async def with_replicas(self, run: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """`await run(*args)`; a write refused for a missing replica (MissingReplica) runs
        again once that resource has been fetched from its owner, each resource fetched at
        most once. Fetched outside the unit of work: a slow owner holds no transaction."""
        fetched: set[tuple[str, str]] = set()
        while True:
            try:
                return await run(*args)
            except MissingReplica as missing:
                wanted = (missing.res_type, missing.res_id)
                if self.fetch_replica is None or wanted in fetched:
                    raise
                fetched.add(wanted)
                if not await self.fetch_replica(*wanted):
                    raise

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(session, ...)` in a read-only session."""

        def work() -> Any:
            with self.database.read() as session:
                return fn(session, *args, **kwargs)

        return await run_in_threadpool(work)

    async def query(self, request: Request, fn: Callable[[Session], Any]) -> Any:
        """Run a search-like read whose database work stops if the client goes away."""
        guard = self.database.guard()

        def work() -> Any:
            with self.database.read(guard) as session:
                return fn(session)

        if guard is None:
            return await run_in_threadpool(work)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, guard))
        try:
            return await run_in_threadpool(work)
        finally:
            watcher.cancel()


async def _cancel_on_disconnect(request: Request, guard: QueryGuard) -> None:
    """Cancel the guarded database work when the client disconnects."""
    while True:
        # The body, if any, has been read: the next message can only be the disconnect.
        message = await request.receive()
        if message["type"] == "http.disconnect":
            break
    # Cancelling on PostgreSQL opens a connection to the server: not on the event loop, and
    # not in the request thread pool, which long queries may have filled.
    await asyncio.to_thread(guard.cancel, CLIENT_GONE)


def fhir_context(request: Request) -> FHIRContext:
    """The dependency giving a handler its service's context."""
    return request.app.state.fhir


def resource_type(request: Request) -> str:
    """The resource type of the matched route (`/Patient/{id}` -> Patient)."""
    context: FHIRContext = request.app.state.fhir
    template: str = request.scope["route"].path
    return template[len(context.settings.base_path) :].split("/")[1]


Ctx = Annotated[FHIRContext, Depends(fhir_context)]
ResType = Annotated[str, Depends(resource_type)]
