"""The three services as real processes on one broker: replicas follow their owners."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from tests import kafka_support
from tests.auth_support import staff_headers
from tests.factories import appointment, patient
from tests.issuer_support import Issuer, running_issuer, token_from
from tests.kafka_support import FHIR_JSON, build_app, eventually, payloads, read_topic, snapshot
from tooling.broker import Broker
from tooling.dev_issuer import SERVICE_CLIENTS, client_key_file
from tooling.ports import free_port
from tooling.service_process import ROOT, ServiceProcess

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database
NAMES = ("intake", "scheduling", "outcomes")
REPLICATED = ("Patient", "Appointment", "MedicationAdministration")
# Replicated too, but no test here writes them: followed as topics, not compared.
ALSO_FOLLOWED = ("EpisodeOfCare", "Consent", "QuestionnaireResponse", "Encounter")
# Replicated from what intake publishes at start: its screening Questionnaire, one version.
PUBLISHED = ("Questionnaire",)


class Cluster:
    """The three services, each on its own SQLite file, all on the test's topics."""

    def __init__(
        self, broker: Broker, prefix: str, directory: Path, issuer: Issuer, ports: dict[str, int]
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.directory = directory
        self.issuer = issuer
        self.peers = {name: f"http://127.0.0.1:{port}/fhir" for name, port in ports.items()}
        self.processes = {
            name: ServiceProcess(name, port=ports[name], **self.settings(name, f"{name}.db"))
            for name in NAMES
        }

    def settings(self, name: str, database: str, prefix: str | None = None) -> dict[str, str]:
        return {
            "env": {"KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap},
            "database_url": self.url(database),
            "topic_prefix": prefix or self.prefix,
            "peer_urls": json.dumps(self.peers),
            # Each service calls its peers with its own client credentials.
            "auth_issuer": self.issuer.url,
            "auth_client_id": SERVICE_CLIENTS[name],
            "auth_client_key_file": str(
                client_key_file(self.issuer.directory, SERVICE_CLIENTS[name])
            ),
        }

    def url(self, database: str) -> str:
        return f"sqlite:///{self.directory / database}"

    def base(self, name: str) -> str:
        return self.peers[name]

    def environment(self, name: str, database: str) -> dict[str, str]:
        """The environment of a command run for service `name` on `database`."""
        settings = self.settings(name, database)
        env = dict(ServiceProcess(name, **settings).env)
        env[f"{name.upper()}_LOG_LEVEL"] = "warning"
        return env


@pytest.fixture
def cluster(kafka_broker: Broker, topic_prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    # Taken when the test starts, not at collection: another worker's process could have
    # bound a port picked minutes earlier. The issuer puts the bases in its tokens' audience.
    ports = {name: free_port() for name in NAMES}
    audiences = tuple(f"http://127.0.0.1:{port}/fhir" for port in ports.values())
    with running_issuer(tmp_path / "auth", audiences=audiences) as issuer:
        yield from _cluster(Cluster(kafka_broker, topic_prefix, tmp_path, issuer, ports))


def _cluster(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        for process in cluster.processes.values():
            process.stop()


def _command(cluster: Cluster, name: str, command: str, database: str) -> dict[str, Any]:
    """Run `python -m services.<name> <command>` and return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", f"services.{name}", command],
        cwd=ROOT,
        env=cluster.environment(name, database),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _snapshots(url: str) -> dict[str, Any]:
    database = Database(url)
    try:
        return {res_type: snapshot(database, res_type) for res_type in REPLICATED}
    finally:
        database.dispose()


async def test_three_services_keep_replicas_at_the_owners_versions(cluster: Cluster):
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in cluster.processes.values()))
    intake, scheduling, outcomes = (cluster.base(name) for name in NAMES)
    token = await asyncio.to_thread(token_from, cluster.issuer)
    headers = {**FHIR_JSON, "Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:

        async def version(url: str) -> str | int | None:
            response = await http.get(url)
            if response.status_code == 200:
                return response.json()["meta"]["versionId"]
            return response.status_code

        async def everywhere(path: str, expected: str | int, where=(scheduling, outcomes)):
            async def check() -> bool:
                return all([await version(f"{base}{path}") == expected for base in where])

            await eventually(check, timeout=30, what=f"{path} at {expected} in the replicas")

        created = await http.post(f"{intake}/Patient", json=patient())
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        await everywhere(f"/Patient/{pid}", "1")
        for base in (scheduling, outcomes):
            assert (await http.get(f"{base}/Patient/{pid}")).json() == created.json()

        updated = await http.put(f"{intake}/Patient/{pid}", json={**patient("Two"), "id": pid})
        assert updated.status_code == 200
        await everywhere(f"/Patient/{pid}", "2")

        booked = await http.post(f"{scheduling}/Appointment", json=appointment(pid))
        assert booked.status_code == 201, booked.text
        await everywhere(f"/Appointment/{booked.json()['id']}", "1", where=(outcomes,))

        refused = await http.post(f"{scheduling}/Patient", json=patient())
        assert refused.status_code == 405
        assert "intake" in refused.json()["issue"][0]["diagnostics"]

        assert (await http.delete(f"{intake}/Patient/{pid}")).status_code in (200, 204)
        await everywhere(f"/Patient/{pid}", 410)
        history = (await http.get(f"{outcomes}/Patient/{pid}/_history")).json()
        assert [e["response"]["etag"] for e in history["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']

        status = (await http.get(outcomes.removesuffix("/fhir") + "/status/events")).json()
        assert status["consumer"]["connected"] is True
        assert status["consumer"]["totalLag"] == 0
        assert status["consumer"]["deadLettered"] == 0
        assert sorted(status["consumer"]["topics"]) == sorted(
            f"{cluster.prefix}{t}" for t in REPLICATED + ALSO_FOLLOWED + PUBLISHED
        )

        # Rebuilt by the replay command, resynchronised by the resync command, and caught
        # up automatically at start by a service whose topics and offsets do not exist:
        # all three equal the live replica.
        late = ServiceProcess(
            "outcomes", **cluster.settings("outcomes", "late.db", prefix="none.yet.")
        )
        replayed, resynced, _ = await asyncio.gather(
            asyncio.to_thread(_command, cluster, "outcomes", "replay", "replayed.db"),
            asyncio.to_thread(_command, cluster, "outcomes", "resync", "resynced.db"),
            asyncio.to_thread(late.start),
        )
        try:
            assert replayed == {
                "replayed": {
                    "Patient": 3,
                    "Appointment": 1,
                    "MedicationAdministration": 0,
                    **dict.fromkeys(ALSO_FOLLOWED, 0),
                    **dict.fromkeys(PUBLISHED, 1),
                }
            }
            assert resynced == {
                "resynced": {
                    "Patient": 3,
                    "Appointment": 1,
                    "MedicationAdministration": 0,
                    **dict.fromkeys(ALSO_FOLLOWED, 0),
                    **dict.fromkeys(PUBLISHED, 1),
                }
            }
            live = _snapshots(cluster.url("outcomes.db"))
            assert len(live["Patient"]["versions"]) == 3
            assert _snapshots(cluster.url("replayed.db")) == live
            assert _snapshots(cluster.url("resynced.db")) == live
            await eventually(
                lambda: _snapshots(cluster.url("late.db")) == live,
                timeout=30,
                what="the late service caught up over _history",
            )
        finally:
            late.stop()


async def test_the_relay_command_publishes_the_outbox(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    url = new_database("intake")
    app = build_app(
        "intake", url, kafka_bootstrap_servers=kafka_broker.bootstrap, topic_prefix=topic_prefix
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t/fhir", headers=staff_headers()
    ) as client:
        ids = [(await client.post("/Patient", json=patient())).json()["id"] for _ in range(3)]
    relay = app.state.events.relay
    # No lifespan: nothing relayed in process (each write has its AuditEvent).
    assert relay.pending() == 3 * 2

    env = ServiceProcess(
        "intake",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap},
        database_url=url,
        topic_prefix=topic_prefix,
    ).env
    process = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "relay"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=3)
        assert [e["subject"] for e in payloads(records)] == [f"Patient/{i}" for i in ids]
        await eventually(lambda: relay.pending() == 0, what="the outbox marked sent")
    finally:
        process.terminate()
        process.wait(timeout=15)
        app.state.fhir.database.dispose()
