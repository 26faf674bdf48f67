"""Database engines and units of work: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


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

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._prepare_sqlite_dir(url)
            self.write_engine = self._sqlite_engine(url, immediate=True)
            self.read_engine = self._sqlite_engine(url, immediate=False)
        else:
            self.write_engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size * 2,
                # A ping on every checkout is a round trip per request: only connections idle
                # for a while are pinged (_ping_idle), and a statement failing on a dropped
                # connection invalidates the pool, so the next checkouts reconnect.
                pool_pre_ping=False,
                # Server-side prepared statements switch to generic plans that ignore the
                # searched values; a search then takes 100x longer (seen at 100k rows).
                connect_args={"prepare_threshold": None},
            )
            self.read_engine = self.write_engine
            _ping_idle(self.write_engine)
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

    @staticmethod
    def _prepare_sqlite_dir(url: str) -> None:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=10,
            max_overflow=20,
        )

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

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
            # Writers take the lock up front so read-then-write never deadlocks on upgrade.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A unit of work: commits when the block succeeds, rolls back on any error."""
        session = self._write_sessions()
        try:
            # SQLite has one writer at a time: queue in-process writers on a lock instead of
            # letting them sleep in SQLite's busy handler (p99 1.1 s -> 0.14 s under load).
            with self._sqlite_writer, session.begin():
                yield session
        finally:
            session.close()
        if self.is_sqlite:
            self._count_write()

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

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session."""
        session = self._read_sessions()
        try:
            with session.begin():
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
