"""What `$find` and booking cost with a year of calendars.

`python -m bench.scheduling` stores a year of half-hour slots (weekdays 08-17 UTC) for 50
practitioners and 10 rooms in one scheduling database on SQLite, in bulk through the store's
index code; gives BENCH_SCHEDULING_WRITES patients (160) a recent dose (an open plasticity
window), then times in process, security off: `$find` (p50/p99), and `$book` with concurrent
clients on one slot and on many slots, beside the same run's plain Appointment create (the
baseline). Prints a table (also bench/results/scheduling.md). BENCH_SCHEDULING_DAYS (365),
_FINDS (300), _WRITERS (8) and _WRITES (160) size it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.scheduling_data import BASE, fhir, load_calendars
from bench.scheduling_setup import open_windows, proposal_sets
from services.scheduling.app import SchedulingSettings, create_app

FINDS = int(os.environ.get("BENCH_SCHEDULING_FINDS", "300"))
WRITERS = int(os.environ.get("BENCH_SCHEDULING_WRITERS", "8"))
WRITES = int(os.environ.get("BENCH_SCHEDULING_WRITES", "160"))
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_FIND_P99_MS = 50.0
JSON = {"Content-Type": "application/fhir+json"}


def _p(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def _finds(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[float]:
    timings = []
    for body in bodies:
        started = time.perf_counter()
        response = await client.post("/Appointment/$find", json=body, headers=JSON)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or not response.json().get("entry"):
            raise RuntimeError(f"$find: {response.status_code} {response.text[:300]}")
    return timings


async def _rate(client: httpx.AsyncClient, path: str, bodies: list[dict]) -> tuple[float, dict]:
    """Writes a second with WRITERS concurrent clients; the statuses seen."""
    queue = list(bodies)
    statuses: dict[int, int] = {}

    async def writer() -> None:
        while queue:
            response = await client.post(path, json=queue.pop(), headers=JSON)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return len(bodies) / (time.perf_counter() - started), statuses


def _plain(n: int, day: datetime) -> dict[str, Any]:
    """An Appointment with no session type or slot: only the overlap rule runs."""
    start = day + timedelta(minutes=30 * n)
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": fhir(start),
        "end": fhir(start + timedelta(minutes=30)),
        "participant": [
            {"actor": {"reference": f"Patient/plain-{n}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/plain-{n % 50}"}, "status": "accepted"},
        ],
    }


async def _measure(url: str) -> dict[str, Any]:
    settings = SchedulingSettings(
        database_url=url,
        migrate_on_start=False,
        resync_on_start=False,
        reconcile_interval_s=0,
        auth_disabled=True,
        canonical_base=BASE,
    )
    app = create_app(settings)
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(app.router.lifespan_context(app))
        client = await running.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench/fhir", timeout=120
            )
        )
        finds = await open_windows(client)
        await _finds(client, finds[:20])  # warm caches and pools
        results["find"] = await _finds(client, [finds[n % len(finds)] for n in range(FINDS)])
        day = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0) + timedelta(400)
        plain = [_plain(n, day) for n in range(WRITES)]
        results["plain"] = await _rate(client, "/Appointment", plain)
        one, many = await proposal_sets(client, WRITES)
        results["one"] = await _rate(client, "/Appointment/$book", one)
        results["many"] = await _rate(client, "/Appointment/$book", many)
    return results


def _table(results: dict[str, Any], slots: int) -> str:
    find = results["find"]
    base = results["plain"][0]
    p99 = _p(find, 99)
    lines = [
        f"Scheduling on SQLite: {slots:,} slots (a year, 50 practitioners, 10 rooms), "
        f"{FINDS} $find calls, {WRITES} writes a cell by {WRITERS} concurrent clients",
        "",
        "| measure | value | ratio to plain create |",
        "|---|---|---|",
        f"| $find p50 | {_p(find, 50):.1f} ms | |",
        f"| $find p99 | {p99:.1f} ms | |",
        f"| plain Appointment create (baseline) | {base:.0f} /s | 1.00 |",
    ]
    for key, label in (("one", "$book, all on one slot"), ("many", "$book, each its own slot")):
        rate, statuses = results[key]
        shown = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        lines.append(f"| {label} ({shown}) | {rate:.0f} /s | {rate / base:.2f} |")
    verdict = "PASS" if p99 < TARGET_FIND_P99_MS else "MISS"
    lines += ["", f"- $find p99 {p99:.1f} ms (target < {TARGET_FIND_P99_MS:.0f} ms): **{verdict}**"]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/scheduling.db"
        started = time.monotonic()
        slots = load_calendars(url)
        print(f"loaded {slots:,} slots in {time.monotonic() - started:.0f} s", flush=True)
        results = asyncio.run(_measure(url))
    table = _table(results, slots)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scheduling.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
