"""Where a slow request's time goes: PostgreSQL's auto_explain logs the plan, with actual times,
of every statement slower than a threshold; the bench reads them back from the server log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
}
_DURATION = re.compile(r"LOG:\s+duration: ([0-9.]+) ms\s+plan:")
MAX_LINES = 60


@contextmanager
def with_auto_explain(dsn: str, database: str, min_ms: float) -> Iterator[None]:
    """New connections to `database` log the plans of statements over `min_ms` meanwhile
    (only for the extra run that explains a miss: analysing every statement costs time)."""
    settings = {**_SETTINGS, "auto_explain.log_min_duration": f"{min_ms:g}ms"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in settings:
                conn.execute(f'ALTER DATABASE "{database}" RESET {name}')


def digest(plan: str) -> str:
    """A plan's duration and the start of its statement, on one line."""
    lines = plan.splitlines()
    start = next((n for n, line in enumerate(lines) if "Query Text:" in line), None)
    if start is None:
        return lines[0]
    text = " ".join([lines[start].split("Query Text:", 1)[1], *lines[start + 1 : start + 4]])
    return f"{lines[0]}: {' '.join(text.split())[:140]}"


def slow_plans(log: Path, offset: int) -> list[str]:
    """The plans logged after `offset` bytes of the server log, slowest first."""
    with log.open(errors="replace") as handle:
        handle.seek(offset)
        text = handle.read()
    plans: list[tuple[float, list[str]]] = []
    for line in text.splitlines():
        found = _DURATION.search(line)
        if found:
            plans.append((float(found.group(1)), [f"{found.group(1)} ms"]))
        elif plans and line[:1] in ("\t", " "):
            plans[-1][1].append(line.rstrip())
    plans.sort(key=lambda plan: -plan[0])
    out = []
    for _, lines in plans:
        if len(lines) > MAX_LINES:
            # The JIT summary closes a plan: its compile time is often the surprise.
            jit = [n for n, line in enumerate(lines) if line.strip() == "JIT:"]
            tail = lines[jit[0] :][:6] if jit and jit[0] >= MAX_LINES else []
            lines = [*lines[:MAX_LINES], f"    ... ({len(lines) - MAX_LINES} more lines)", *tail]
        out.append("\n".join(lines))
    return out
