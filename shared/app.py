"""Compose one FHIR service: database, store, interactions, routes and health endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth.audit import install_audit_trail
from shared.auth.needs import Need, needs
from shared.auth.setup import OPS_SCOPE, install_security
from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.docs import install_docs
from shared.errors_http import install_error_handlers
from shared.events.outbox import EVENTS_WRITTEN, Outbox, current_traceparent, valid_traceparent
from shared.events.runtime import EventRuntime
from shared.fhir.interactions import Interactions
from shared.fhir.projections import backfill
from shared.fhir.registry import Registry
from shared.fhir.rest import FHIRContext, build_router
from shared.fhir.store import ResourceStore
from shared.fhir.transaction_bundles import BundleProcessor
from shared.observability.metrics import (
    RequestMetrics,
    exposition,
    forget_process,
    watch_pool,
)
from shared.observability.tracing import install_tracing, shutdown_tracing
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def package_version() -> str:
    try:
        return version("kemdr")
    except PackageNotFoundError:
        return "0.0.0"


def build_context(settings: ServiceSettings, registry: Registry) -> FHIRContext:
    """Wire the database, store and interactions of one service."""
    database = Database(
        settings.resolved_database_url(), statement_timeout_ms=settings.statement_timeout_ms
    )
    outbox = Outbox(
        registry,
        source=f"urn:kemdr:{settings.service_name}",
        topic_prefix=settings.topic_prefix,
        max_data_bytes=settings.event_max_data_bytes,
    )
    store = ResourceStore(database, registry, outbox=outbox)
    interactions = Interactions(settings, registry, store)
    bundles = BundleProcessor(interactions, database)
    return FHIRContext(
        settings, registry, database, store, interactions, bundles, package_version()
    )


class TraceContext:
    """Pure ASGI middleware: events written by a request, and its log lines, continue the
    caller's W3C trace (a malformed header counts as none)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        token = current_traceparent.set(
            valid_traceparent(header.decode("latin-1")) if header else None
        )
        try:
            await self.app(scope, receive, send)
        finally:
            current_traceparent.reset(token)


def create_service_app(settings: ServiceSettings, registry: Registry) -> FastAPI:
    """A FastAPI app serving the registry's resource types as FHIR R4."""
    context = build_context(settings, registry)
    events = EventRuntime(settings, registry, context.database, context.store, context.interactions)
    # A write refused for a replica whose event has not arrived asks the owner once.
    context.fetch_replica = events.fetch_replica
    context.database.after_commit.append(
        lambda info: events.relay.wake() if info.get(EVENTS_WRITTEN) else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(upgrade, context.database)
        await run_in_threadpool(context.database.optimize)
        projections = [p for ps in registry.projections.values() for p in ps]
        filled = await run_in_threadpool(backfill, context.database, projections)
        if filled:
            log.info("projections built from the stored resources: %s", filled)
        await events.start()
        yield
        # Requests still running after uvicorn's graceful period must not hold the exit.
        stopped = await asyncio.to_thread(context.database.cancel_all)
        if stopped:
            log.warning("cancelled %d database unit(s) of work still running", stopped)
        try:
            await asyncio.wait_for(events.stop(), timeout=settings.shutdown_grace_s / 4)
        except TimeoutError:
            log.warning("event runtime did not stop in time; exiting without it")
        context.database.dispose()
        # Its live gauges (pool, lag) leave the sums of the workers still running.
        forget_process()
        shutdown_tracing()

    app = FastAPI(
        title=f"{registry.service} FHIR R4 service",
        version=context.version,
        lifespan=lifespan,
        description=f"FHIR R4 API of the {registry.service} service; base {settings.base_path}",
        # A redirect would point at a URL built from the client's Host header; a path with a
        # trailing slash is answered (or 404) where it is instead.
        redirect_slashes=False,
    )
    app.state.fhir = context
    app.state.events = events
    install_error_handlers(app)
    install_docs(app, settings)

    # Refused requests never reach the handlers.
    install_security(app, settings)
    install_audit_trail(app, context)  # its middleware must enclose authentication
    # Outside security: refused requests are counted too, by the route they were meant for.
    app.add_middleware(RequestMetrics, service=registry.service, routes=lambda: app.routes)
    # Outermost: the access line of every request, refused ones too, names the caller's trace.
    app.add_middleware(TraceContext)
    watch_pool(registry.service, "write", context.database.write_engine)
    if context.database.read_engine is not context.database.write_engine:
        watch_pool(registry.service, "read", context.database.read_engine)
    engines = {context.database.write_engine, context.database.read_engine}
    install_tracing(app, registry.service, list(engines))

    app.include_router(build_router(context))

    @app.get("/healthz", tags=["ops"], summary="Liveness: fails when the consumer is stalled")
    async def healthz() -> JSONResponse:
        if events.stalled:
            # A restart is the cure: the broker answers, yet this process cannot consume.
            body = {"status": "stalled", "service": registry.service, "reason": events.stalled}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "service": registry.service})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics (cluster network only)")
    async def metrics() -> Response:
        body, media_type = await run_in_threadpool(exposition, registry.service, context.database)
        return Response(body, media_type=media_type)

    @app.get("/readyz", tags=["ops"], summary="Readiness: database up, topics there")
    async def readyz() -> JSONResponse:
        try:
            await run_in_threadpool(context.database.ping)
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        missing = events.missing_topics()
        if missing:
            # A configuration error (topics owned elsewhere, not created yet): no traffic.
            body = {"status": "unavailable", "database": "up", "missingTopics": missing}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    @app.get(
        "/status/events",
        tags=["ops"],
        summary="Outbox relay and consumer state",
        dependencies=needs(Need(scope=OPS_SCOPE, exact=True)),
    )
    async def event_status() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(events.status))

    return app
