"""`make bench`, query bounds part: read p99 while 60 clients send `_sort` with 500 keys.

Issue 6 saw 60 such requests on 20,000 Patients block every read for about 85 s. The intake
service (SQLite, one uvicorn worker) is loaded with Patients, then a reader sends one read at a
time through three phases: alone (the same-run baseline), during waves of the 500-key attack,
and during waves of 60 searches sorted by the 5 keys still allowed (for information).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.load import _chunks, bulk_create
from services.intake.app import registry
from shared.db.engine import Database
from shared.db.migrate import upgrade
from tests.auth_support import process_auth, staff_headers
from tooling.service_process import ServiceProcess

READ_P99_TARGET_MS = 50.0
RESULTS = Path(__file__).resolve().parent / "results"
ATTACK_KEYS = ",".join(["name", "-name"] * 250)  # 500 keys, repeats included, as reported
ALLOWED_KEYS = "family,-given,birthdate,gender,_lastUpdated"


def _pct(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of latencies in seconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000


def _patient(n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:kemdr:bench", "value": str(n)}],
        "name": [{"family": f"Family{rng.randrange(5000)}", "given": [f"Given{n}"]}],
        "gender": rng.choice(["female", "male", "other"]),
        "birthDate": f"{rng.randrange(1930, 2010)}-{rng.randrange(1, 13):02}-15",
    }


def load(url: str, patients: int) -> list[str]:
    """Store `patients` Patients straight into the database; returns their ids."""
    database = Database(url)
    try:
        upgrade(database)
        definition = registry().resources["Patient"]
        rng = random.Random(6)
        rows = [(f"bench-{n}", _patient(n, rng)) for n in range(patients)]
        for batch in _chunks(iter(rows), 2000):
            with database.write() as session:
                bulk_create(session, definition, batch)
        database.optimize()
        return [res_id for res_id, _ in rows]
    finally:
        database.dispose()


def read_loop(base: str, ids: list[str], stop: threading.Event) -> tuple[list[float], int]:
    """One read at a time until `stop`; returns the latencies and the number of failures."""
    latencies: list[float] = []
    failures = 0
    rng = random.Random(1)
    with httpx.Client(base_url=base, timeout=120, headers=staff_headers()) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.get(f"/Patient/{rng.choice(ids)}")
            latencies.append(time.perf_counter() - started)
            failures += response.status_code != 200
    return latencies, failures


async def waves(base: str, keys: str, clients: int, seconds: float, every: float) -> list[int]:
    """Every `every` s, `clients` concurrent searches sorted by `keys`; returns the statuses."""
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, timeout=600, limits=limits, headers=staff_headers()
    ) as client:

        async def one() -> None:
            try:
                response = await client.get("/Patient", params={"_sort": keys, "_count": "10"})
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)

        deadline = time.monotonic() + seconds
        pending: set[asyncio.Task[None]] = set()
        while time.monotonic() < deadline:
            pending |= {asyncio.create_task(one()) for _ in range(clients)}
            await asyncio.sleep(every)
            pending = {task for task in pending if not task.done()}
        if pending:
            await asyncio.wait(pending)
    return statuses


def phase(
    base: str, ids: list[str], seconds: float, attack: str | None, every: float, clients: int
) -> dict[str, Any]:
    """Run the reader for `seconds` at least, beside waves of searches sorted by `attack`."""
    stop = threading.Event()
    result: dict[str, Any] = {}

    def reader() -> None:
        result["latencies"], result["failures"] = read_loop(base, ids, stop)

    thread = threading.Thread(target=reader)
    thread.start()
    started = time.monotonic()
    if attack is None:
        time.sleep(seconds)
        statuses: list[int] = []
    else:
        statuses = asyncio.run(waves(base, attack, clients, seconds, every))
    stop.set()
    thread.join()
    latencies = result["latencies"]
    return {
        "seconds": time.monotonic() - started,
        "reads": len(latencies),
        "read_failures": result["failures"],
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "attack_requests": len(statuses),
        "attack_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }


def markdown(r: dict[str, Any]) -> str:
    base = r["phases"]["baseline"]["p99_ms"]
    attack = r["phases"]["attack"]["p99_ms"]
    rows = {
        "baseline": "reader alone (baseline)",
        "attack": f"+ {r['clients']} x `_sort` with 500 keys, every {r['every']:.0f} s",
        "allowed": f"+ {r['clients']} x `_sort` with 5 keys (allowed), once",
    }
    lines = [
        "# `_sort` attack benchmark",
        "",
        f"- {r['patients']:,} Patients in SQLite; intake service, one uvicorn worker; 2 shared "
        f"cores; {r['seconds']:.0f} s per phase (longer while searches are still answered); "
        f"{r['when']}",
        "",
        "| phase | reads | read p50 ms | read p99 ms | p99 vs baseline | attack requests "
        "(status: count) |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for key, label in rows.items():
        p = r["phases"][key]
        ratio = p["p99_ms"] / base if base and not math.isnan(base) else float("nan")
        statuses = ", ".join(f"{s}: {n}" for s, n in p["attack_statuses"].items()) or "-"
        lines.append(
            f"| {label} | {p['reads']:,} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{ratio:.1f}x | {statuses} |"
        )
    verdict = "PASS" if attack < READ_P99_TARGET_MS else "MISS"
    lines += [
        "",
        "## Target",
        "",
        f"- **{verdict}** read p99 during the 500-key attack < {READ_P99_TARGET_MS:.0f} ms: "
        f"{attack:.1f} ms (baseline {base:.1f} ms)",
    ]
    return "\n".join(lines) + "\n"


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["baseline", "attack", "allowed"]
    labels = ["reader alone", "500-key attack", "5-key sorts"]
    fig, axis = plt.subplots(figsize=(7, 4))
    for offset, key, colour in ((-0.2, "p50_ms", "#4c72b0"), (0.2, "p99_ms", "#dd8452")):
        values = [r["phases"][n][key] for n in names]
        axis.bar([i + offset for i in range(3)], values, width=0.4, label=key[:3], color=colour)
    axis.axhline(READ_P99_TARGET_MS, color="red", linestyle="--", label="p99 target")
    axis.set_xticks(range(3), labels)
    axis.set_ylabel("read latency, ms")
    axis.set_yscale("log")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the three phases and write bench/results/sort_attack.{md,json,png}."""
    parser = argparse.ArgumentParser(description=__doc__)
    env = os.environ.get
    parser.add_argument("--patients", type=int, default=int(env("BENCH_SORT_PATIENTS", 20_000)))
    parser.add_argument("--seconds", type=float, default=float(env("BENCH_SORT_SECONDS", 20)))
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between waves")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="kemdr-bench-sort-"))
    url = f"sqlite:///{folder}/intake.db"
    print(f"loading {args.patients:,} Patients...", flush=True)
    ids = load(url, args.patients)
    service = ServiceProcess(
        "intake",
        database_url=url,
        migrate_on_start="false",
        env={"KAFKA_BOOTSTRAP_SERVERS": ""},
        **process_auth(),
    )
    phases: dict[str, Any] = {}
    with service:
        base = f"{service.url}/fhir"
        read_loop(base, ids, _after(2.0))  # warm up
        # The attack comes in waves; the allowed sorts once, as the 60 requests of the issue.
        plan = (
            ("baseline", None, args.every),
            ("attack", ATTACK_KEYS, args.every),
            ("allowed", ALLOWED_KEYS, args.seconds),
        )
        for name, keys, every in plan:
            print(f"phase {name}: {args.seconds:.0f} s...", flush=True)
            phases[name] = phase(base, ids, args.seconds, keys, every, args.clients)
    result = {
        "patients": args.patients,
        "seconds": args.seconds,
        "clients": args.clients,
        "every": args.every,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "phases": phases,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (RESULTS / "sort_attack.md").write_text(text)
    (RESULTS / "sort_attack.json").write_text(json.dumps(result, indent=2))
    chart(result, RESULTS / "sort_attack.png")
    print(text)
    return 0


def _after(seconds: float) -> threading.Event:
    """An event that is set `seconds` from now."""
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event


if __name__ == "__main__":
    sys.exit(main())
