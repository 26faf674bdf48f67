"""Command line of every service: `serve` (the default) and `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.observability.logs import configure_logging
from shared.observability.metrics import clear_multiprocess_dir
from shared.settings import ServiceSettings


def main(
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    argv: list[str] | None = None,
) -> int:
    """Run a service's command line."""
    parser = argparse.ArgumentParser(description="FHIR service")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "relay", "resync", "replay"],
        help="serve (default); migrate the database; relay the outbox to Kafka; resync "
        "replicas from their owners' _history; replay topics to rebuild replicas",
    )
    args = parser.parse_args(argv)
    settings = settings_factory()
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    if args.command == "migrate":
        database = Database(settings.resolved_database_url())
        try:
            upgrade(database)
        finally:
            database.dispose()
        print(f"{settings.service_name}: database schema is up to date")
        return 0
    if args.command in ("relay", "resync", "replay"):
        return asyncio.run(_event_command(args.command, settings, app_factory))
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "proxy_headers": False,
        # Our logging (JSON lines, configured above) for uvicorn's loggers too.
        "log_config": None,
        "access_log": False,
        # Half the grace period for requests in flight; the rest for the shutdown itself.
        "timeout_graceful_shutdown": settings.shutdown_grace_s / 2,
    }
    if settings.workers > 1:
        # Each worker imports the app afresh: uvicorn needs the factory's import path (its
        # supervisor then handles the signals of every worker).
        _serve_workers(settings, f"{app_factory.__module__}:{app_factory.__qualname__}", options)
        return 0
    config = uvicorn.Config(app_factory(settings), **options)
    try:
        BoundedServer(config, settings.shutdown_grace_s).run()
    except KeyboardInterrupt:
        # uvicorn re-raises a captured Ctrl-C once shut down; the shutdown was clean, so no
        # traceback (make run's launcher forwards Ctrl-C to every service).
        return 0
    return 0


class BoundedServer(uvicorn.Server):
    """uvicorn's server, but once told to stop, the process exits within the grace period.

    A request stuck in a worker thread would otherwise hold the interpreter's exit forever.
    """

    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.grace_s, _exit_now, args=(self.grace_s,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super().handle_exit(sig, frame)


def _exit_now(grace_s: float) -> None:
    logging.getLogger(__name__).error("still running %.0f s after the stop signal", grace_s)
    logging.shutdown()
    os._exit(1)


def _serve_workers(settings: ServiceSettings, app_path: str, options: dict[str, Any]) -> None:
    """Serve with several uvicorn worker processes sharing one listening socket."""
    config = uvicorn.Config(app_path, factory=True, workers=settings.workers, **options)
    # The workers' metric files of an earlier run would be summed with theirs.
    clear_multiprocess_dir()
    bound = config.bind_socket()
    # uvicorn binds with protocol 0, so asyncio in the workers leaves Nagle's algorithm on:
    # each response then waited ~40 ms for a delayed ACK (21 creates/s with one client).
    sock = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, bound.detach())
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


async def _event_command(
    command: str, settings: ServiceSettings, app_factory: Callable[[ServiceSettings], FastAPI]
) -> int:
    """Run one event command against the service's database and broker."""
    # These commands serve no HTTP, so they need no issuer to check tokens against.
    update = {"relay_in_process": False, "resync_on_start": False}
    if not settings.auth_issuer:
        update["auth_disabled"] = True
    settings = settings.model_copy(update=update)
    app = app_factory(settings)
    events = app.state.events
    database = app.state.fhir.database
    upgrade(database)
    try:
        if command == "resync":
            print(json.dumps({"resynced": await events.resync_all()}))
        elif command == "replay":
            if not events.enabled:
                print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
                return 2
            print(json.dumps({"replayed": await events.replay_all()}))
        else:
            if not events.enabled:
                print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
                return 2
            brokers = settings.kafka_bootstrap_servers
            print(f"{settings.service_name}: relaying the outbox to {brokers}")
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                # Finish the round in flight, so a stop publishes no duplicates.
                loop.add_signal_handler(signum, events.relay.stop)
            await events.relay.run()
    finally:
        database.dispose()
    return 0
