"""The audit spool: access records committed before their response, drained into AuditEvents.

Requests hand their record to one writer thread that commits whatever has queued in a single
transaction (group commit): a burst of reads costs one commit, not one each, and on SQLite
the reads do not queue one by one on the single writer lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from sqlalchemy import delete, insert, select

from shared.auth.audit_event import audit_event
from shared.auth.audit_record import Access
from shared.db.engine import Database
from shared.db.models import AuditSpoolRow
from shared.fhir.store import ResourceStore
from shared.observability.metrics import AUDIT_WRITES

log = logging.getLogger(__name__)

_SPOOL = AuditSpoolRow.__table__
_INSERT = insert(_SPOOL)
DRAIN_BATCH = 200
# SQLite has one writer at a time: a request spooling its record waits for the drainer's whole
# transaction, so there the drainer moves fewer records per transaction and pauses between
# full batches, letting waiting writers in (a $find p99 of 60 ms came down to about 10).
SQLITE_DRAIN_BATCH = 20
SQLITE_PAUSE_S = 0.02


class Spooler:
    """Group commit of access records; `put` returns once its record is committed."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._pending: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Called (from the writer thread) after each committed batch: wakes the drainer.
        self.on_commit: Callable[[], None] | None = None

    async def put(self, access: Access) -> None:
        """Commit the record durably; raises when it cannot be (the response is not sent)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._thread is None:
                # Started on first use: a bare ASGI app (no lifespan) must audit as well.
                self._thread = threading.Thread(target=self._run, name="audit-spool", daemon=True)
                self._thread.start()
            self._pending.append((access.to_json(), loop, done))
            self._wake.notify()
        await done

    def stop(self) -> None:
        """Commit what is queued, then end the writer thread."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    def _insert(self, records: list[str]) -> None:
        # A bare connection, not a unit of work: no session, guard or commit hooks to pay for
        # on every read (this is the read path's whole audit cost).
        database = self.database
        # A full commit on PostgreSQL (a server crash or fail-over loses nothing either); the
        # group commit shares its flush among the requests waiting. SQLite in WAL mode with
        # synchronous=NORMAL survives a crash of this process, not of the machine.
        with database.sqlite_writer(), database.write_engine.begin() as connection:
            connection.execute(_INSERT, [{"record": record} for record in records])

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                batch, self._pending = self._pending, []
                if not batch:
                    self._thread = None
                    self._stopping = False
                    return
            error: BaseException | None = None
            try:
                self._insert([record for record, _, _ in batch])
            except Exception as exc:  # every waiting request fails rather than go unaudited
                log.error("audit spool write failed: %s", type(exc).__name__)
                error = exc
            for _, loop, done in batch:
                with contextlib.suppress(RuntimeError):  # that request's loop is gone
                    loop.call_soon_threadsafe(_settle, done, error)
            if error is None and self.on_commit is not None:
                self.on_commit()


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class Drainer:
    """Turns spooled records into AuditEvents, a batch per transaction, in the background."""

    def __init__(self, database: Database, store: ResourceStore, service: str) -> None:
        self.database = database
        self.store = store
        self.service = service
        self.interval_s = 1.0
        self.batch = SQLITE_DRAIN_BATCH if database.is_sqlite else DRAIN_BATCH
        self.pause_s = SQLITE_PAUSE_S if database.is_sqlite else 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Records that could not become AuditEvents: kept in the spool (nothing is thrown
        # away), logged by number, and passed over so that the rest keep draining.
        self.stuck: set[int] = set()

    def drain_once(self, limit: int | None = None) -> int:
        """Move up to `limit` (default: the batch size) records into AuditEvents in one
        transaction; returns how many."""
        limit = self.batch if limit is None else limit
        query = select(_SPOOL.c.pk, _SPOOL.c.record).order_by(_SPOOL.c.pk).limit(limit)
        if self.stuck:
            query = query.where(_SPOOL.c.pk.not_in(sorted(self.stuck)))
        if not self.database.is_sqlite:
            # Replicas of a service drain the same spool without taking the same rows.
            query = query.with_for_update(skip_locked=True)
        with self.database.write() as session:
            rows = session.connection().execute(query).all()
            moved = []
            for row in rows:
                try:
                    with session.begin_nested():
                        event = audit_event(Access.from_json(row.record), self.service)
                        self.store.create(session, "AuditEvent", event)
                except Exception as exc:
                    log.error("audit spool row %d cannot be stored: %s", row.pk, type(exc).__name__)
                    self.stuck.add(row.pk)
                    continue
                moved.append(row.pk)
            if moved:
                session.connection().execute(delete(_SPOOL).where(_SPOOL.c.pk.in_(moved)))
                AUDIT_WRITES.labels(self.service, "spool").inc(len(moved))
        return len(rows)

    def drain_all(self) -> int:
        """Drain until the spool holds nothing it can move."""
        total = 0
        while count := self.drain_once():
            total += count
        return total

    def wake(self) -> None:
        """Ask for a drain soon (safe from any thread)."""
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="audit-drainer")

    async def stop(self) -> None:
        """Stop the loop, then drain what is left (a crash instead leaves it to the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.to_thread(self.drain_all)
        except Exception as exc:
            log.warning("audit spool not drained at stop: %s", type(exc).__name__)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()  # before draining, so a wake during the drain is kept
            try:
                full = await asyncio.to_thread(self.drain_once) == self.batch
            except Exception as exc:  # the rows stay spooled; the next round retries
                log.warning("audit drain failed: %s", type(exc).__name__)
                full = False
            if full:
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
