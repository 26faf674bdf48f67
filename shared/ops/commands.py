"""The repair commands behind `python -m services.<name> dlq|reindex|outbox`.

Each prints what it did on stdout (a table or sentences; `--json` for one JSON document) and
raises CommandError, shown as one line, when it cannot do what was asked.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fastapi import FastAPI

from shared.db.engine import Database
from shared.ops.dead_letters import DeadLetterError, DeadLetters
from shared.ops.outbox_status import describe_status, outbox_status
from shared.ops.progress import ProgressBar
from shared.ops.reindex import reindex_type
from shared.settings import ServiceSettings


class CommandError(Exception):
    """What the operator is told, on one line, before a non-zero exit."""


def _emit(args: argparse.Namespace, document: Any, lines: list[str]) -> None:
    print(json.dumps(document) if args.json else "\n".join(lines))


# ---- dlq ----------------------------------------------------------------------------------
_COLUMNS = ("id", "sourceTopic", "partition", "offset", "sourceOffset", "attempts", "redriven")


async def dlq(args: argparse.Namespace, settings: ServiceSettings, app: FastAPI) -> int:
    """`dlq list|show|redrive`."""
    if not settings.kafka_bootstrap_servers:
        raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set")
    consumer = app.state.events.consumer
    name = settings.service_name
    if not consumer.handlers:
        _emit(args, [] if args.dlq_command == "list" else {}, [f"{name} consumes no topics"])
        if args.dlq_command == "show":
            raise CommandError(f"{name} consumes no topics, so it has no dead letters")
        return 0
    letters = DeadLetters(settings, consumer)
    try:
        if args.dlq_command == "list":
            found = await letters.listing(args.topic)
            _emit(args, found, _table(found, consumer.name))
        elif args.dlq_command == "show":
            shown = await letters.show(args.topic, args.id)
            print(json.dumps(shown, indent=None if args.json else 2))
        else:
            report = await letters.redrive(args.topic, args.id)
            _emit(args, report, _redrive_lines(report))
            if report["failed"]:
                return 1
    except DeadLetterError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _table(found: list[dict[str, Any]], group: str) -> list[str]:
    if not found:
        return [f"no dead letters of {group}"]
    lines = ["  ".join(_COLUMNS) + "  eventType  subject  error"]
    for letter in found:
        cells = [str(letter[c]) for c in _COLUMNS]
        cells += [str(letter["eventType"]), str(letter["subject"]), str(letter["error"])]
        lines.append("  ".join(cells))
    waiting = sum(not letter["redriven"] for letter in found)
    lines.append(f"{len(found)} dead letter(s) of {group}, {waiting} not redriven yet")
    return lines


def _redrive_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for outcome, verb in (
        ("redriven", "redriven"),
        ("alreadyApplied", "skipped (applied already)"),
        ("unreadable", "not redrivable"),
        ("failed", "FAILED"),
    ):
        for entry in report[outcome]:
            why = f": {entry['error']}" if entry.get("error") else ""
            lines.append(f"{verb} {entry['id']} ({entry['subject']}) at {entry['at']}{why}")
    counts = ", ".join(f"{len(report[k])} {k}" for k in report)
    lines.append(f"redrive done: {counts}")
    return lines


# ---- reindex ------------------------------------------------------------------------------
def reindex(args: argparse.Namespace, settings: ServiceSettings, app: FastAPI) -> int:
    """`reindex [--type T]`: every registered type, or the one named."""
    context = app.state.fhir
    types = sorted(context.registry.resources)
    if args.type is not None:
        if args.type not in context.registry.resources:
            raise CommandError(f"{settings.service_name} stores no type {args.type}")
        types = [args.type]
    if args.batch < 1:
        raise CommandError("--batch must be at least 1")
    counts: dict[str, int] = {}
    for res_type in types:
        bar: ProgressBar | None = None

        def shown(name: str, done: int, total: int) -> None:
            nonlocal bar
            if total == 0:
                return
            if bar is None:
                bar = ProgressBar(f"reindex {name}", total)
            bar.total = total
            bar.update(done)

        counts[res_type] = reindex_type(
            context.store, res_type, batch=args.batch, progress=None if args.quiet else shown
        )
        if bar is not None:
            bar.close()
    lines = [f"reindexed {n} {t} resource(s)" for t, n in counts.items() if n]
    lines.append(f"reindex done: {sum(counts.values())} resource(s) of {len(types)} type(s)")
    _emit(args, {"reindexed": counts}, lines)
    return 0


# ---- outbox -------------------------------------------------------------------------------
def outbox(args: argparse.Namespace, settings: ServiceSettings) -> int:
    """`outbox status`."""
    database = Database(settings.resolved_database_url())
    try:
        status = outbox_status(database)
    finally:
        database.dispose()
    _emit(args, status, describe_status(status))
    return 0
