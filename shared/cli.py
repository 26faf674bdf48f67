"""Command line of every service: `serve` (the default) and `migrate`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.settings import ServiceSettings


def main(
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    argv: list[str] | None = None,
) -> int:
    """Run a service's command line."""
    parser = argparse.ArgumentParser(description="FHIR service")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = settings_factory()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "migrate":
        database = Database(settings.resolved_database_url())
        try:
            upgrade(database)
        finally:
            database.dispose()
        print(f"{settings.service_name}: database schema is up to date")
        return 0
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
    )
    return 0
