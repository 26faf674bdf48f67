"""Errors as the status endpoint and the logs show them: bounded, with no addresses."""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError

# IPv4 addresses, optionally with a port, and "port 5432"-style phrases of driver messages.
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\bport \d+\b|'[\w.-]+', \d+")


def describe(exc: BaseException) -> str:
    """Class and message of an error, at most 500 characters, without hosts or ports.

    `/status/events` is read by people who need not know where the database or the brokers
    live; a database driver's message names both, so only its class is kept.
    """
    if isinstance(exc, DBAPIError):
        original = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        return f"{type(exc).__name__}: the database refused or failed ({original})"
    return _ADDRESS.sub("<address>", f"{type(exc).__name__}: {exc}")[:500]
