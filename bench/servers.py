"""Real uvicorn processes (one worker each, unless asked) on free ports, run by the bench."""

from __future__ import annotations

import os
from pathlib import Path

from tests.auth_support import process_auth
from tooling.ports import free_port
from tooling.service_process import HTTPProcess

LOG_LEVEL = "warning"  # no access log, for the service and the baseline alike


def auth_env(prefix: str) -> dict[str, str]:
    """`<PREFIX>_AUTH_*` variables that make a service process trust the test signing key
    (tests/auth_support.py): the bench's requests carry its programme-wide staff token."""
    return {f"{prefix}_{key.upper()}": value for key, value in process_auth().items()}


def outcomes_service(database_url: str, *, workers: int = 1) -> HTTPProcess:
    """The outcomes service as deployed: `python -m services.outcomes serve`."""
    port = free_port()
    env = {
        "OUTCOMES_DATABASE_URL": database_url,
        "OUTCOMES_HOST": "127.0.0.1",
        "OUTCOMES_PORT": str(port),
        "OUTCOMES_MIGRATE_ON_START": "false",
        "OUTCOMES_LOG_LEVEL": LOG_LEVEL,
        "OUTCOMES_WORKERS": str(workers),
        # No broker: the outbox fills in each write's transaction, nothing is relayed.
        "KAFKA_BOOTSTRAP_SERVERS": "",
        **auth_env("OUTCOMES"),
    }
    return HTTPProcess("outcomes", ["-m", "services.outcomes", "serve"], env, port)


def baseline_server() -> HTTPProcess:
    port = free_port()
    env = {
        "BENCH_BASELINE_HOST": "127.0.0.1",
        "BENCH_BASELINE_PORT": str(port),
        "BENCH_BASELINE_LOG_LEVEL": LOG_LEVEL,
    }
    return HTTPProcess("baseline", ["-m", "bench.baseline"], env, port)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process and its children (uvicorn's workers) have used
    so far (Linux /proc)."""
    total = 0.0
    for one in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a child that has just exited
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)
