"""Prometheus metrics at `/metrics`, correct when uvicorn runs several worker processes.

Counters and histograms are process-local and, with `PROMETHEUS_MULTIPROC_DIR` set (one
directory per pod, emptied at start), prometheus-client sums them over every worker at scrape
time. What the database knows (outbox backlog, replica staleness) is read at scrape time by
whichever worker answers, so it never depends on which worker wrote what.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event, func, select
from starlette.routing import Match

from shared.db.models import OutboxRow, ReplicaProgress
from shared.fhir.dates import utcnow
from shared.observability.logs import log_request

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from shared.db.engine import Database

PREFIX = "kemdr"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Latency buckets from a cached read (~1 ms) to a slow Bundle or report (~10 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status code",
    ["service", "route", "method", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to the end of the response, by route template and method",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
POOL_IN_USE = Gauge(
    f"{PREFIX}_db_pool_connections_in_use",
    "Database connections checked out of the pool",
    ["service", "engine"],
    multiprocess_mode="livesum",
)
RELAY_PUBLISHED = Counter(
    f"{PREFIX}_relay_published_total", "Outbox rows published to Kafka", ["service"]
)
RELAY_ERRORS = Counter(
    f"{PREFIX}_relay_errors_total", "Relay attempts that failed and will be retried", ["service"]
)
CONSUMED = Counter(
    f"{PREFIX}_events_applied_total", "Events applied by a consumer", ["service", "topic"]
)
RETRIES = Counter(
    f"{PREFIX}_consumer_retries_total",
    "Event applications retried after a transient failure",
    ["service", "topic"],
)
DEAD_LETTERS = Counter(
    f"{PREFIX}_dead_letters_total",
    "Messages sent to a dead-letter topic",
    ["service", "topic"],
)
LAG = Gauge(
    f"{PREFIX}_consumer_lag",
    "Messages behind the end of each assigned topic partition",
    ["service", "topic", "partition"],
    multiprocess_mode="livemax",
)
AUDIT_WRITES = Counter(
    f"{PREFIX}_audit_events_written_total",
    "AuditEvents stored (with the write, or drained from the spool)",
    ["service", "path"],
)


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def clear_multiprocess_dir() -> None:
    """Remove metric files left by earlier processes (before the workers start)."""
    directory = _multiprocess_dir()
    if directory and os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def forget_process() -> None:
    """A stopping worker's live gauges no longer count."""
    directory = _multiprocess_dir()
    if directory:
        mark_process_dead(os.getpid(), directory)


class DatabaseCollector:
    """Read at scrape time: outbox backlog and age, and how stale each replica is."""

    def __init__(self, service: str, database: Database) -> None:
        self.service, self.database = service, database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        backlog = GaugeMetricFamily(
            f"{PREFIX}_outbox_backlog", "Outbox rows not yet published", labels=["service"]
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_unsent_age_seconds",
            "Age of the oldest outbox row not yet published (0 when none)",
            labels=["service"],
        )
        stale = GaugeMetricFamily(
            f"{PREFIX}_replica_staleness_seconds",
            "Now minus the owner's time of the last event applied in order, per topic",
            labels=["service", "topic"],
        )
        try:
            with self.database.read() as session:
                count, oldest = session.execute(
                    select(func.count(), func.min(OutboxRow.created_at)).where(
                        OutboxRow.sent_at.is_(None)
                    )
                ).one()
                # Partitions count apart; the topic's last event applied in order is the
                # newest of theirs (lag per partition shows a partition left behind).
                progress = session.execute(
                    select(
                        ReplicaProgress.topic, func.max(ReplicaProgress.contiguous_time)
                    ).group_by(ReplicaProgress.topic)
                ).all()
        except Exception:  # a scrape must answer while the database is away
            return
        backlog.add_metric([self.service], int(count))
        age.add_metric([self.service], _seconds(now, oldest))
        for topic, at in progress:
            stale.add_metric([self.service, topic], _seconds(now, at))
        yield backlog
        yield age
        yield stale


def _seconds(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def watch_pool(service: str, name: str, engine: Engine) -> None:
    """Count the engine's connections in use (checkout and checkin events)."""
    gauge = POOL_IN_USE.labels(service, name)
    event.listen(engine, "checkout", lambda *_: gauge.inc())
    event.listen(engine, "checkin", lambda *_: gauge.dec())


def exposition(service: str, database: Database) -> tuple[bytes, str]:
    """The text a scrape gets: every worker's metrics and the database's gauges."""
    registry: Any
    directory = _multiprocess_dir()
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    else:
        registry = CollectorRegistry()
        registry.register(_Everything())
    registry.register(DatabaseCollector(service, database))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Everything:
    """The process's default registry, inside a per-scrape one (next to the database's)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


class RequestMetrics:
    """Pure ASGI middleware: requests by route template (never a raw path with ids)."""

    def __init__(self, app: ASGIApp, service: str, routes: Callable[[], list[Any]]) -> None:
        self.app, self.service, self.routes = app, service, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = self._template(scope)
            # Any token is a method to HTTP: an invented one must not mint new series.
            method = scope.get("method", "GET")
            method = method if method in METHODS else "other"
            elapsed = time.perf_counter() - started
            REQUESTS.labels(self.service, template, method, str(status)).inc()
            LATENCY.labels(self.service, template, method).observe(elapsed)
            log_request(template, method, status, elapsed)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # Refused before routing (a 401, a 429): find the route it was meant for.
            route = _route_for(scope, self.routes())
        return getattr(route, "path", None) or "<unmatched>"


def _route_for(scope: Scope, routes: list[Any]) -> Any:
    """The route a request matches, looking inside included routers (FastAPI keeps them
    nested; ours are included without a prefix)."""
    for route in routes:
        if route.matches(scope)[0] != Match.FULL:
            continue
        inner = getattr(route, "original_router", None)
        if inner is None:
            return route
        found = _route_for(scope, inner.routes)
        if found is not None:
            return found
    return None
