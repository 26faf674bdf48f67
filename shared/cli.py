"""Command line of every service: `serve` (the default), `migrate`, the event commands
(`relay`, `resync`, `replay`) and the repair commands (`dlq`, `reindex`, `outbox`)."""

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
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.events.describe import describe
from shared.observability.logs import configure_logging
from shared.observability.metrics import clear_multiprocess_dir
from shared.ops import commands
from shared.ops.commands import CommandError
from shared.settings import ServiceSettings


def build_parser(service: str) -> argparse.ArgumentParser:
    """The command line: `serve` when no command is given."""
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}", description=f"The {service} FHIR service."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="serve the FHIR API (the default)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("relay", help="relay the outbox to Kafka until stopped")
    commands.add_parser("resync", help="resynchronise replicas from their owners' _history")
    commands.add_parser("replay", help="rebuild replicas by replaying their topics")

    dlq = commands.add_parser("dlq", help="this service's dead-lettered events")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    for action, text in (
        ("list", "list the dead letters (never the resources they carry)"),
        ("show", "show one dead letter: headers and envelope without its data"),
        ("redrive", "apply the dead letters not redriven yet, once their cause is fixed"),
    ):
        sub = dlq_commands.add_parser(action, help=text, description=text)
        sub.add_argument("--topic", help="one source topic (e.g. fhir.Patient or Patient)")
        if action != "list":
            sub.add_argument(
                "--id",
                required=action == "show",
                help="an event id, or <dlq topic>:<partition>:<offset> as listed",
            )
        _json_flag(sub)

    reindex = commands.add_parser(
        "reindex",
        help="rebuild search index rows and projections from the stored resources",
        description="Rebuild search index rows (and projections) from the stored resources, "
        "in short batches; a run stopped half-way resumes where it was.",
    )
    reindex.add_argument("--type", help="one resource type (default: every type)")
    reindex.add_argument("--batch", type=int, default=500, help="resources per transaction")
    reindex.add_argument("--quiet", action="store_true", help="no progress bar")
    _json_flag(reindex)

    outbox = commands.add_parser("outbox", help="the event outbox")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    status = outbox_commands.add_parser(
        "status", help="backlog, oldest unsent row, last relay error, sequence per topic"
    )
    _json_flag(status)
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def main(
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    argv: list[str] | None = None,
) -> int:
    """Run a service's command line."""
    service = app_factory.__module__.split(".")[-2] if "." in app_factory.__module__ else "service"
    args = build_parser(service).parse_args(argv)
    command = args.command or "serve"
    try:
        settings = settings_factory()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"{service}: setting {where}: {first['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    if command == "serve":
        return _serve(settings, app_factory)
    if command in ("dlq", "reindex", "outbox"):
        # Their stdout is their answer: logs go to stderr.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
    try:
        return _run(command, args, settings, app_factory)
    except CommandError as exc:
        print(f"{settings.service_name} {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{settings.service_name} {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the operator, never a traceback
        print(f"{settings.service_name} {command} failed: {describe(exc)}", file=sys.stderr)
        return 1


def _run(
    command: str,
    args: argparse.Namespace,
    settings: ServiceSettings,
    app_factory: Callable[[ServiceSettings], FastAPI],
) -> int:
    if command == "migrate":
        database = Database(settings.resolved_database_url())
        try:
            upgrade(database)
        finally:
            database.dispose()
        print(f"{settings.service_name}: database schema is up to date")
        return 0
    if command == "outbox":
        return commands.outbox(args, settings)
    if command == "reindex":
        # Synchronous, so Ctrl-C stops it between two statements (the batch rolls back).
        settings, app = _command_app(settings, app_factory)
        try:
            return commands.reindex(args, settings, app)
        finally:
            app.state.fhir.database.dispose()
    return asyncio.run(_event_command(command, args, settings, app_factory))


def _serve(settings: ServiceSettings, app_factory: Callable[[ServiceSettings], FastAPI]) -> int:
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


def _command_app(
    settings: ServiceSettings, app_factory: Callable[[ServiceSettings], FastAPI]
) -> tuple[ServiceSettings, FastAPI]:
    """The service's app for a command: no relay, no catch-up, no lifespan."""
    # These commands serve no HTTP, so they need no issuer to check tokens against.
    update = {"relay_in_process": False, "resync_on_start": False}
    if not settings.auth_issuer:
        update["auth_disabled"] = True
    settings = settings.model_copy(update=update)
    return settings, app_factory(settings)


async def _event_command(
    command: str,
    args: argparse.Namespace,
    settings: ServiceSettings,
    app_factory: Callable[[ServiceSettings], FastAPI],
) -> int:
    """Run one event or repair command against the service's database and broker."""
    settings, app = _command_app(settings, app_factory)
    events = app.state.events
    database = app.state.fhir.database
    try:
        if command == "dlq":
            return await commands.dlq(args, settings, app)
        # The repair commands leave migrating to `migrate`; these did it themselves always.
        upgrade(database)
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
