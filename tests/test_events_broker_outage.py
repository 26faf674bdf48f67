"""A broker killed for longer than every client time-out: replication resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests import kafka_support
from tests.factories import patient
from tests.kafka_support import eventually, running
from tooling.broker import Broker

topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database
own_broker = kafka_support.own_broker

# Every client time-out of the consumer (session 1.5 s, request and metadata 3 s) is shorter
# than the outage, so each of them fires while the broker is gone.
REQUEST_TIMEOUT_MS = 3000
OUTAGE_S = 8


async def _history_versions(client: httpx.AsyncClient, pid: str) -> list[int]:
    response = await client.get(f"/Patient/{pid}/_history")
    if response.status_code != 200:
        return []
    return sorted(int(e["response"]["etag"][3:-1]) for e in response.json().get("entry", []))


async def test_replicas_catch_up_after_the_broker_is_killed_for_longer_than_every_timeout(
    own_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {
        "kafka_bootstrap_servers": own_broker.bootstrap,
        "topic_prefix": topic_prefix,
        "kafka_request_timeout_ms": REQUEST_TIMEOUT_MS,
    }
    async with running("intake", new_database("intake"), **settings) as intake:
        owners = {"intake": intake}
        async with (
            running("scheduling", new_database("sched"), owners=owners, **settings) as sched,
            running("outcomes", new_database("outcomes"), owners=owners, **settings) as outcomes,
        ):
            replicas = (sched, outcomes)
            written: dict[str, int] = {}  # patient id -> its latest version at the owner
            stop = asyncio.Event()

            async def write_continuously() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    created = await intake.client.post("/Patient", json=patient(f"W{n}"))
                    assert created.status_code == 201, created.text
                    pid = created.json()["id"]
                    written[pid] = 1
                    if n % 3 == 0:  # updates too, to check each resource's order
                        body = {**patient(f"W{n}b"), "id": pid}
                        updated = await intake.client.put(f"/Patient/{pid}", json=body)
                        assert updated.status_code == 200, updated.text
                        written[pid] = 2
                    await asyncio.sleep(0.05)

            writer = asyncio.create_task(write_continuously())
            try:
                await eventually(lambda: len(written) >= 5, what="writes before the outage")
                await asyncio.sleep(1)
                own_broker.kill()
                await asyncio.sleep(OUTAGE_S)
                for replica in replicas:
                    consumer = replica.events.status()["consumer"]
                    assert consumer["connected"] is False
                    assert consumer["state"] != "stopped"
                own_broker.start()  # same command, same port, empty
                await asyncio.sleep(2)
            finally:
                stop.set()
                await writer
            assert len(written) > 20

            async def converged(replica: kafka_support.Running) -> bool:
                for pid, version in written.items():
                    response = await replica.client.get(f"/Patient/{pid}")
                    if response.status_code != 200:
                        return False
                    if response.json()["meta"]["versionId"] != str(version):
                        return False
                return True

            for replica in replicas:
                await eventually(lambda r=replica: converged(r), timeout=90, what="replica whole")
                # Per-resource order: every version reached the replica, none skipped.
                for pid, version in written.items():
                    assert await _history_versions(replica.client, pid) == list(
                        range(1, version + 1)
                    )
                await eventually(
                    lambda r=replica: (
                        r.events.status()["consumer"]["state"] == "consuming"
                        and r.events.status()["consumer"]["connected"]
                    ),
                    timeout=30,
                    what="the consumer consuming again",
                )
            # Liveness never failed: restarting the pod would not have helped.
            for service in (intake, *replicas):
                transport = httpx.ASGITransport(app=service.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    assert (await c.get("/healthz")).status_code == 200
