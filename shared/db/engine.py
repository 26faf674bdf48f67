"""Database engines and units of work: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.sqlite_hints import render_index_hints

log = logging.getLogger(__name__)

# SQLite calls the progress handler every this many virtual machine instructions (~0.1 ms).
_PROGRESS_STEPS = 10_000
# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout or a cancel request.
_QUERY_CANCELED = "57014"
# Why a unit of work was stopped, besides its time limit.
TIMEOUT = "timeout"
CLIENT_GONE = "the client went away"
SHUTDOWN = "the service is stopping"


class StatementCancelled(Exception):
    """A statement stopped by its time limit, or because its client went away or we stop."""

    def __init__(self, timeout_ms: int, reason: str) -> None:
        super().__init__(reason)
        self.timeout_ms = timeout_ms
        self.reason = reason


class QueryGuard:
    """The time limit of one unit of work's statements and a way to stop them from elsewhere.

    Statements run in a worker thread; `cancel()` may be called from any other thread.
    """

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.deadline = math.inf
        self.reason: str | None = None
        self._lock = threading.Lock()
        # The PostgreSQL connection while one of our statements runs on it, for cancel().
        self._running: Any = None

    def started(self, dbapi_connection: Any) -> None:
        """A statement starts: its time limit begins (SQLite), and it can be cancelled."""
        if self.reason is not None:
            raise StatementCancelled(self.timeout_ms, self.reason)
        self.deadline = time.monotonic() + self.timeout_ms / 1000
        if hasattr(dbapi_connection, "cancel_safe"):
            with self._lock:
                self._running = dbapi_connection

    def finished(self) -> None:
        """The statement is over: a later cancel() must not reach the pooled connection."""
        with self._lock:
            self._running = None

    def expired(self) -> bool:
        """True when the running statement must stop (SQLite's progress handler asks)."""
        return self.reason is not None or time.monotonic() > self.deadline

    def cancel(self, reason: str = CLIENT_GONE) -> None:
        """Stop the statement in flight and any later one (blocks briefly on PostgreSQL)."""
        if self.reason is None:
            self.reason = reason
        # Under the lock, so the connection cannot go back to the pool meanwhile.
        with self._lock:
            if self._running is not None:
                try:
                    self._running.cancel_safe(timeout=5)
                except Exception as exc:  # the statement then ends at its time-out
                    log.warning("cancelling a statement failed: %s", type(exc).__name__)


_guard: ContextVar[QueryGuard | None] = ContextVar("query_guard", default=None)


def _is_cancel(exc: OperationalError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _QUERY_CANCELED:
        return True
    return type(orig).__module__ == "sqlite3" and str(orig) == "interrupted"


def _sqlite_progress() -> int:
    # Runs inside SQLite in the statement's own thread, so the context variable is its guard.
    guard = _guard.get()
    return 1 if guard is not None and guard.expired() else 0


# Pooled connections unused this long are pinged before use (a restart, an idle time-out).
IDLE_PING_SECONDS = 10.0


def _ping_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it has been idle a while."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool then discards this connection and checks out a fresh one.
            raise DisconnectionError(str(exc)) from exc


class Database:
    """Engines for one service's database; `write()` is the one place that commits."""

    def __init__(
        self, url: str, *, pool_size: int = 10, statement_timeout_ms: int | None = None
    ) -> None:
        self.url = url
        # Limit of every statement in read() and write(); None: no limit (migrations, tools).
        self.statement_timeout_ms = statement_timeout_ms
        self._guards: weakref.WeakSet[QueryGuard] = weakref.WeakSet()
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._prepare_sqlite_dir(url)
            self.write_engine = self._sqlite_engine(url, immediate=True)
            self.read_engine = self._sqlite_engine(url, immediate=False)
        else:
            self.write_engine = create_engine(
                url,
                # Parameters are patient data: never in logs or exception messages.
                hide_parameters=True,
                pool_size=pool_size,
                max_overflow=pool_size * 2,
                # A ping on every checkout is a round trip per request: only connections idle
                # for a while are pinged (_ping_idle), and a statement failing on a dropped
                # connection invalidates the pool, so the next checkouts reconnect.
                pool_pre_ping=False,
                # Server-side prepared statements switch to generic plans that ignore the
                # searched values; a search then takes 100x longer (seen at 100k rows).
                connect_args={
                    "prepare_threshold": None,
                    # The statement limit as a session default: setting it in every
                    # transaction would cost each unit of work a round trip.
                    **(
                        {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}
                        if statement_timeout_ms
                        else {}
                    ),
                },
            )
            self.read_engine = self.write_engine
            _ping_idle(self.write_engine)
        for engine in {self.write_engine, self.read_engine}:
            event.listen(engine, "before_cursor_execute", _before_execute)
            event.listen(engine, "after_cursor_execute", _after_execute)
            event.listen(engine, "handle_error", _on_error)
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._stats_lock = threading.Lock()
        self._sqlite_writer: AbstractContextManager[object] = (
            threading.Lock() if self.is_sqlite else nullcontext()
        )
        self._writes = 0
        self._analyze_every = 1000
        self._analyzed_at = time.monotonic()
        self._analyzing = False
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # Called after each unit of work commits, with what its session noted in `info`
        # (the outbox notes that it wrote events, so the relay is woken).
        self.after_commit: list[Callable[[dict[str, Any]], None]] = []

    @staticmethod
    def _prepare_sqlite_dir(url: str) -> None:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
        engine = create_engine(
            url,
            hide_parameters=True,  # parameters are patient data (see the PostgreSQL engine)
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=10,
            max_overflow=20,
        )
        # Without it every `INDEXED BY` hint of the search and access queries is dropped, and
        # SQLite (no statistics until ANALYZE) may scan a whole value index per candidate.
        render_index_hints(engine)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite defers it otherwise).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            # Lets a statement past its time limit, or cancelled, stop ("interrupted").
            dbapi_connection.set_progress_handler(_sqlite_progress, _PROGRESS_STEPS)

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
            # Writers take the lock up front so read-then-write never deadlocks on upgrade.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def guard(self) -> QueryGuard | None:
        """A guard for one unit of work, to cancel it from another thread (None: no limit)."""
        if self.statement_timeout_ms is None:
            return None
        return QueryGuard(self.statement_timeout_ms)

    def cancel_all(self, reason: str = SHUTDOWN) -> int:
        """Cancel every unit of work in flight (at shutdown); returns how many."""
        guards = list(self._guards)
        for guard in guards:
            guard.cancel(reason)
        return len(guards)

    @contextmanager
    def _limited(self, session: Session, guard: QueryGuard | None) -> Iterator[None]:
        """Run the block's statements under `guard`, mapping a cancellation to one error."""
        guard = guard or self.guard()
        if guard is None:
            yield
            return
        self._guards.add(guard)
        token = _guard.set(guard)
        try:
            if not self.is_sqlite and guard.timeout_ms != self.statement_timeout_ms:
                # Enforced by the server too, so it holds even if this process is stuck (the
                # connections carry the usual limit already).
                session.connection().exec_driver_sql(
                    f"SET LOCAL statement_timeout = {int(guard.timeout_ms)}"
                )
            yield
        except OperationalError as exc:
            if not _is_cancel(exc):
                raise
            raise StatementCancelled(guard.timeout_ms, guard.reason or TIMEOUT) from None
        finally:
            _guard.reset(token)
            self._guards.discard(guard)

    @contextmanager
    def write(self, guard: QueryGuard | None = None) -> Iterator[Session]:
        """A unit of work: commits when the block succeeds, rolls back on any error."""
        session = self._write_sessions()
        try:
            # SQLite has one writer at a time: queue in-process writers on a lock instead of
            # letting them sleep in SQLite's busy handler (p99 1.1 s -> 0.14 s under load).
            with self._sqlite_writer, session.begin(), self._limited(session, guard):
                yield session
            committed = dict(session.info)
        finally:
            session.close()
        if self.is_sqlite:
            self._count_write()
        for hook in self.after_commit:
            hook(committed)

    def _count_write(self) -> None:
        # SQLite plans searches well only with statistics: refresh them as the data grows.
        with self._stats_lock:
            self._writes += 1
            due = self._writes >= self._analyze_every or (
                self._writes and time.monotonic() - self._analyzed_at > 60
            )
            if not due:
                return
            self._writes = 0
            self._analyzed_at = time.monotonic()
            if self._analyzing:
                return
            self._analyzing = True
        # Off the request path: the write has committed, its response need not wait.
        threading.Thread(target=self._analyze, name="sqlite-analyze", daemon=True).start()

    def _analyze(self) -> None:
        try:
            self.optimize()
        except OperationalError as exc:
            # The write has committed; fresher statistics can wait for the next round.
            log.warning("ANALYZE skipped: %s", type(exc).__name__)
        finally:
            self._analyzing = False

    def optimize(self) -> None:
        """Refresh the query planner's statistics (sampled, so it takes milliseconds)."""
        if not self.is_sqlite:
            return
        with self._sqlite_writer, self.write_engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA analysis_limit=10000")
            connection.exec_driver_sql("ANALYZE")

    def sqlite_writer(self) -> AbstractContextManager[object]:
        """The in-process writer queue of SQLite (a no-op on PostgreSQL), for bare writes."""
        return self._sqlite_writer

    @contextmanager
    def read(self, guard: QueryGuard | None = None) -> Iterator[Session]:
        """A read-only session; `guard` lets another thread cancel its statements."""
        session = self._read_sessions()
        try:
            with session.begin(), self._limited(session, guard):
                yield session
        finally:
            session.close()

    def lock(self, session: Session, key: str) -> None:
        """Serialise writers on `key` until the transaction ends (SQLite already serialises)."""
        if not self.is_sqlite:
            session.execute(
                text("SELECT pg_advisory_xact_lock(:k)"),
                {"k": zlib.crc32(key.encode()) - 2**31},
            )

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        with self.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def _before_execute(conn: Any, _cursor: Any, *_args: Any) -> None:
    guard = _guard.get()
    if guard is not None:
        guard.started(conn.connection.dbapi_connection)


def _after_execute(*_args: Any) -> None:
    guard = _guard.get()
    if guard is not None:
        guard.finished()


def _on_error(_context: Any) -> None:
    guard = _guard.get()
    if guard is not None:
        guard.finished()
