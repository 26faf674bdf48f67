"""Logging failures without their messages: an exception's text may quote patient data."""

from __future__ import annotations

import traceback


def where_it_failed(exc: BaseException) -> str:
    """The exception's type and the frames it passed through (file, line, function), but
    not its message or the values it held."""
    frames = traceback.extract_tb(exc.__traceback__)
    path = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1])
    return f"{type(exc).__name__} at {path or 'unknown'}"
