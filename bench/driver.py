"""Drive HTTP load with asyncio: N concurrent workers for a warm-up plus a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import orjson

from bench.client import Connection, HttpxConnection, LeanConnection
from bench.servers import cpu_seconds, machine_ticks

# A request is (method, path, body); the body is pre-serialised JSON so the client stays light.
Request = tuple[str, str, bytes | None]
REQUEST_TIMEOUT = 60.0


@dataclass
class Phase:
    """What one measured phase saw; latencies are in seconds."""

    name: str
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    client_cpu: float = 0.0  # share of one core the bench process used
    server_cpu: float = 0.0  # share of one core the server process used
    machine_cpu: float = 0.0  # share of all cores busy, whoever used them
    hits: list[int] = field(default_factory=list)  # search matches, when asked for

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, pct: float) -> float:
        """The nearest-rank percentile, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000

    def fail(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 5:
            self.errors.append(message)


async def _run(
    base_url: str,
    phase: Phase,
    make: Callable[[int], Request],
    warmup: float,
    count_hits: bool,
    client: str,
) -> None:
    counter = itertools.count()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + phase.seconds

    async def worker(connection: Connection) -> None:
        while time.perf_counter() < stop_at:
            method, path, body = make(next(counter))
            began = time.perf_counter()
            try:
                status, content = await asyncio.wait_for(
                    connection.request(method, path, body), REQUEST_TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError, httpx.HTTPError, TimeoutError) as exc:
                phase.fail(f"{method} {path}: {type(exc).__name__}: {exc}")
                await connection.close()
                continue
            ended = time.perf_counter()
            if not 200 <= status < 300:
                phase.fail(f"{method} {path}: {status} {content[:300].decode(errors='replace')}")
                continue
            if measure_from <= began and ended <= stop_at:
                phase.latencies.append(ended - began)
                if count_hits:
                    phase.hits.append(int(orjson.loads(content).get("total", 0)))

    async def run_all(connections: list[Connection]) -> None:
        tasks = [asyncio.create_task(worker(c)) for c in connections]
        # Requests still running at the end would not be measured: leave them, don't wait.
        _done, pending = await asyncio.wait(tasks, timeout=stop_at - time.perf_counter() + 0.05)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connection in connections:
            await connection.close()

    if client == "httpx":
        limits = httpx.Limits(
            max_connections=phase.concurrency, max_keepalive_connections=phase.concurrency
        )
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=None) as shared:
            await run_all([HttpxConnection(shared) for _ in range(phase.concurrency)])
    else:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        await run_all([LeanConnection(host, port) for _ in range(phase.concurrency)])


def drive(
    base_url: str,
    name: str,
    make: Callable[[int], Request],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    server_pid: int,
    count_hits: bool = False,
    client: str = "lean",
) -> Phase:
    """Send requests from `make(i)` with `concurrency` workers; measure after the warm-up."""
    phase = Phase(name, concurrency, seconds)
    client_before, server_before = time.process_time(), cpu_seconds(server_pid)
    machine_before = machine_ticks()
    wall = time.perf_counter()
    asyncio.run(_run(base_url, phase, make, warmup, count_hits, client))
    wall = time.perf_counter() - wall
    phase.client_cpu = (time.process_time() - client_before) / wall
    phase.server_cpu = (cpu_seconds(server_pid) - server_before) / wall
    busy, total = (a - b for a, b in zip(machine_ticks(), machine_before, strict=True))
    phase.machine_cpu = busy / total if total else 0.0
    return phase
