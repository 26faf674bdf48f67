"""`make bench`, events part: replication latency at a steady write rate, raw Kafka latency,
and outbox relay throughput on a backlog, all against the same Tansu broker in one run."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.client import LeanConnection
from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import OutboxRow
from shared.events import kafka
from shared.events.relay import OutboxRelay
from shared.fhir.dates import utcnow
from shared.settings import ServiceSettings
from tests.auth_support import process_auth, staff_headers
from tooling.broker import Broker
from tooling.ports import free_port
from tooling.service_process import ServiceProcess

E2E_P99_TARGET_MS = 100.0
RELAY_TARGET_PER_S = 5000.0
RESULTS = Path(__file__).resolve().parent / "results"


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _patient(i: int) -> bytes:
    return json.dumps(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:kemdr:bench", "value": str(i)}],
            "name": [{"family": f"Bench{i}", "given": ["Pat"]}],
            "gender": "female",
            "birthDate": "1980-05-17",
        }
    ).encode()


async def steady_writes(port: int, rate: int, seconds: float) -> dict[str, float]:
    """Open-loop POSTs at `rate`/s; returns the wall-clock time of each 201, by resource id."""
    done: dict[str, float] = {}
    errors = 0
    pool = [LeanConnection("127.0.0.1", port) for _ in range(16)]
    free: asyncio.Queue[LeanConnection] = asyncio.Queue()
    for connection in pool:
        free.put_nowait(connection)

    async def one(i: int) -> None:
        nonlocal errors
        connection = await free.get()
        try:
            status, body = await connection.request("POST", "/fhir/Patient", _patient(i))
        finally:
            free.put_nowait(connection)
        if status == 201:
            done[json.loads(body)["id"]] = time.time()
        else:
            errors += 1

    start = time.monotonic()
    tasks = []
    count = int(rate * seconds)
    for i in range(count):
        # Fixed schedule, whatever the latency: the load does not ease off when we are slow.
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for connection in pool:
        await connection.close()
    if errors:
        raise RuntimeError(f"{errors} writes failed")
    return done


def replica_latencies(owner_db: Path, replica_db: Path, sent: dict[str, float]) -> list[float]:
    """201 at the owner -> event applied at the replica, in ms, joined on the event id."""
    with sqlite3.connect(owner_db) as owner:
        subject_of = dict(owner.execute("SELECT event_id, key FROM event_outbox"))
    with sqlite3.connect(replica_db) as replica:
        applied = replica.execute("SELECT event_id, processed_at FROM processed_events").fetchall()
    latencies = []
    for event_id, processed_at in applied:
        subject = subject_of.get(event_id)
        if subject is None:
            continue
        res_id = subject.split("/", 1)[1]
        if res_id in sent:
            moment = datetime.fromisoformat(processed_at).replace(tzinfo=UTC).timestamp()
            latencies.append((moment - sent[res_id]) * 1000)
    return latencies


async def raw_kafka(bootstrap: str, rate: int, seconds: float) -> list[float]:
    """Produce-to-consume latency of bare aiokafka at the same rate, in ms."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    # The same fetch wait as the services' consumers, so the two rows compare like for like.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=ServiceSettings().kafka_fetch_max_wait_ms,
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    latencies: list[float] = []
    count = int(rate * seconds)

    async def consume() -> None:
        seen = 0
        while seen < count + 1:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    seen += 1
                    if message.value != b"warm-up":
                        latencies.append((now - float(message.value.decode())) * 1000)

    reader = asyncio.create_task(consume())
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.send(topic, str(time.time()).encode())
    await producer.flush()
    await asyncio.wait_for(reader, timeout=60)
    await producer.stop()
    await consumer.stop()
    return latencies


def fill_outbox(database: Database, rows: int) -> None:
    """A backlog of realistic events (a Patient each), written straight into the outbox."""
    payload_of = json.loads(_patient(0))
    table = OutboxRow.__table__
    now = utcnow()
    with database.write() as session:
        batch = []
        for _ in range(rows):
            event_id = str(uuid.uuid4())
            subject = f"Patient/{uuid.uuid4()}"
            event = {
                "specversion": "1.0",
                "id": event_id,
                "source": "urn:kemdr:bench",
                "type": "fhir.Patient.created",
                "subject": subject,
                "time": now.isoformat() + "Z",
                "datacontenttype": "application/fhir+json",
                "versionid": "1",
                "data": {**payload_of, "id": subject.split("/")[1]},
            }
            batch.append(
                {
                    "event_id": event_id,
                    "topic": "bench.relay.Patient",
                    "key": subject,
                    "event_type": event["type"],
                    "payload": json.dumps(event),
                    "traceparent": None,
                    "created_at": now,
                }
            )
            if len(batch) == 5000:
                session.connection().execute(table.insert(), batch)
                batch.clear()
        if batch:
            session.connection().execute(table.insert(), batch)


async def relay_throughput(bootstrap: str, folder: Path, rows: int) -> float:
    """Events/s the relay publishes (and marks sent) from a backlog of `rows`."""
    settings = ServiceSettings(
        service_name="bench", kafka_bootstrap_servers=bootstrap, data_dir=str(folder)
    )
    database = Database(settings.resolved_database_url())
    upgrade(database)
    fill_outbox(database, rows)
    relay = OutboxRelay(settings, database, ["bench.relay.Patient"])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        await kafka.ensure_topics(settings, ["bench.relay.Patient"])
        started = time.perf_counter()
        published = await relay.publish_pending(producer)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        database.dispose()
    if published != rows or relay.pending() != 0:
        raise RuntimeError(f"relay published {published} of {rows}")
    return rows / elapsed


def _wait_for(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if httpx.get(url, headers=staff_headers(), timeout=5).status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} never appeared")


def _status(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/status/events", headers=staff_headers(), timeout=5).json()


def markdown(r: dict[str, Any]) -> str:
    e2e, raw = r["e2e_ms"], r["raw_ms"]
    p99, relay = e2e["p99"], r["relay_per_s"]
    lines = [
        "# Event backbone benchmark",
        "",
        f"- {r['rate']} writes/s for {r['seconds']:.0f} s (Patients at intake, replicated to "
        f"scheduling); relay backlog {r['backlog']:,} outbox rows; {r['when']}",
        "- Broker: Tansu (in memory) on loopback; services on SQLite, one uvicorn worker each; "
        "2 shared cores",
        "",
        "| measure | p50 ms | p99 ms | samples |",
        "|---|--:|--:|--:|",
        f"| owner's 201 -> replica updated | {e2e['p50']:.1f} | {e2e['p99']:.1f} | {e2e['n']:,} |",
        f"| raw aiokafka produce -> consume (same broker, same rate) | {raw['p50']:.1f} | "
        f"{raw['p99']:.1f} | {raw['n']:,} |",
        f"| ratio end-to-end / raw Kafka (p99) | | {p99 / raw['p99']:.1f}x | |",
        "",
        f"| relay throughput | {relay:,.0f} events/s |",
        "|---|--:|",
        "",
        "## Targets",
        "",
        f"- **{'PASS' if p99 < E2E_P99_TARGET_MS else 'MISS'}** end-to-end p99 < "
        f"{E2E_P99_TARGET_MS:.0f} ms: {p99:.1f} ms",
        f"- **{'PASS' if relay >= RELAY_TARGET_PER_S else 'MISS'}** relay >= "
        f"{RELAY_TARGET_PER_S:,.0f} events/s: {relay:,.0f}/s",
    ]
    return "\n".join(lines) + "\n"


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["owner 201 -> replica", "raw Kafka"]
    for offset, key, colour in ((-0.2, "p50", "#4c72b0"), (0.2, "p99", "#dd8452")):
        values = [r["e2e_ms"][key], r["raw_ms"][key]]
        left.bar([i + offset for i in range(2)], values, width=0.4, label=key, color=colour)
    left.axhline(E2E_P99_TARGET_MS, color="red", linestyle="--", label="p99 target")
    left.set_xticks(range(2), labels)
    left.set_ylabel("ms")
    left.set_title(f"Latency at {r['rate']} writes/s")
    left.legend()
    right.bar(["relay"], [r["relay_per_s"]], color="#55a868")
    right.axhline(RELAY_TARGET_PER_S, color="red", linestyle="--", label="target")
    right.set_ylabel("events/s")
    right.set_title(f"Relay on a {r['backlog']:,}-row backlog")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": _pct(values, 50),
        "p99": _pct(values, 99),
        "n": len(values),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and write bench/results/events.{md,json,png}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=int(os.environ.get("BENCH_EVENT_RATE", 200)))
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("BENCH_EVENT_SECONDS", 60))
    )
    parser.add_argument(
        "--backlog", type=int, default=int(os.environ.get("BENCH_RELAY_BACKLOG", 50_000))
    )
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="kemdr-bench-events-"))
    ports = {name: free_port() for name in ("intake", "scheduling")}
    peers = json.dumps({n: f"http://127.0.0.1:{p}/fhir" for n, p in ports.items()})
    with Broker() as broker:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_SESSION_TIMEOUT_MS": "2000"}
        # The services trust the test signing key, and every request the bench sends carries
        # its staff token. They have no client credentials of their own for peer calls: the
        # replica needs none here (both stores start empty, and Patients this small travel in
        # their events), so the start-up catch-up over the owner's `_history` is off rather
        # than left to fail with a 401.
        services = [
            ServiceProcess(
                name,
                port=ports[name],
                env=env,
                data_dir=str(folder / name),
                peer_urls=peers,
                resync_on_start="false",
                **process_auth(),
            )
            for name in ports
        ]
        for service in services:
            service.start()
        try:
            print("warming up: waiting for the replica consumer to join...", flush=True)
            asyncio.run(steady_writes(ports["intake"], 5, 1))
            _wait_for(f"{services[1].url}/fhir/Patient?_count=1&_total=accurate", 30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = _status(services[1].url)
                if (status.get("consumer") or {}).get("processed", 0) >= 5:
                    break
                time.sleep(0.2)
            print(f"steady load: {args.rate} writes/s for {args.seconds:.0f} s...", flush=True)
            sent = asyncio.run(steady_writes(ports["intake"], args.rate, args.seconds))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = _status(services[1].url)
                if status["consumer"]["processed"] >= len(sent) + 5:
                    break
                time.sleep(0.2)
        finally:
            for service in services:
                service.stop()
        e2e = replica_latencies(
            folder / "intake" / "intake.db", folder / "scheduling" / "scheduling.db", sent
        )
        if len(e2e) < len(sent):
            print(f"only {len(e2e)} of {len(sent)} writes reached the replica", file=sys.stderr)
            return 1
        print("raw aiokafka at the same rate...", flush=True)
        raw = asyncio.run(raw_kafka(broker.bootstrap, args.rate, min(args.seconds, 30)))
        print(f"relay on a backlog of {args.backlog:,} rows...", flush=True)
        relay = asyncio.run(relay_throughput(broker.bootstrap, folder / "relay", args.backlog))
    result = {
        "rate": args.rate,
        "seconds": args.seconds,
        "backlog": args.backlog,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "e2e_ms": _summary(e2e),
        "raw_ms": _summary(raw),
        "relay_per_s": relay,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (RESULTS / "events.md").write_text(text)
    (RESULTS / "events.json").write_text(json.dumps(result, indent=2))
    chart(result, RESULTS / "events.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
