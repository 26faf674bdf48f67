"""The repair commands as an operator runs them: real processes, a real database and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, insert, select, text, update

from services.outcomes.timeline.rows import TimelineRows
from services.outcomes.timeline.tables import SESSIONS
from shared.cli import main
from shared.db.engine import Database
from shared.db.models import ProcessedEvent, ReindexProgress, StringIndex, TokenIndex, VersionRow
from tests import kafka_support
from tests.conftest import BACKENDS, SERVICES, make_settings
from tests.factories import appointment, patient
from tests.kafka_support import eventually, produce, read_topic
from tests.replicas import replicate
from tooling.broker import Broker
from tooling.ports import free_port
from tooling.service_process import ROOT, ServiceProcess

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database


def _env(service: str, database_url: str, **settings: str) -> dict[str, str]:
    prefix = f"{service.upper()}_"
    return {
        **os.environ,
        f"{prefix}DATABASE_URL": database_url,
        f"{prefix}LOG_LEVEL": "warning",
        f"{prefix}AUTH_DISABLED": "true",
        **{k if k.isupper() else f"{prefix}{k.upper()}": v for k, v in settings.items()},
    }


def command(
    service: str, *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m services.<service> <args>` as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def answer(service: str, *args: str, env: dict[str, str]) -> Any:
    """The JSON a successful command prints (with --json)."""
    done = command(service, *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- dead letters --------------------------------------------------------------------------
@pytest.fixture
def three(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
) -> Iterator[dict[str, Any]]:
    """Intake (with no broker: its writes publish nothing) as the owner scheduling and outcomes
    fetch id-only events from; scheduling and outcomes consuming the test's topics."""
    port = free_port()
    intake_url = f"http://127.0.0.1:{port}/fhir"
    # Scheduling and outcomes are never called: no test here needs their _history.
    unused = "http://127.0.0.1:9/fhir"
    peers = json.dumps({"intake": intake_url, "scheduling": unused, "outcomes": unused})
    broker = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    consuming = {
        "topic_prefix": topic_prefix,
        "peer_urls": peers,
        "consumer_max_attempts": "2",
        "consumer_backoff_seconds": "0.05",
        "resync_on_start": "false",
        "reconcile_interval_s": "0",
        "gap_timeout_s": "3600",
        "auth_disabled": "true",
    }
    databases = {name: new_database(name) for name in ("intake", "scheduling", "outcomes")}
    processes = {
        "intake": ServiceProcess(
            "intake", port=port, database_url=databases["intake"], auth_disabled="true"
        ),
        **{
            name: ServiceProcess(name, env=broker, database_url=databases[name], **consuming)
            for name in ("scheduling", "outcomes")
        },
    }
    try:
        for process in processes.values():
            process.start()
        yield {
            "processes": processes,
            "databases": databases,
            "env": {
                name: _env(name, databases[name], **broker, **consuming)
                for name in ("scheduling", "outcomes")
            },
            "intake": intake_url,
        }
    finally:
        for process in processes.values():
            process.stop()


def _id_only_event(patient_id: str) -> dict[str, Any]:
    """An event whose resource the consumer must fetch from its owner."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "intake",
        "type": "fhir.Patient.created",
        "subject": f"Patient/{patient_id}",
        "time": "2026-12-01T10:00:00.000000Z",
        "versionid": "1",
        "dataomitted": True,
    }


def _versions(database_url: str, patient_id: str) -> int:
    database = Database(database_url)
    try:
        with database.read() as session:
            return session.execute(
                select(func.count()).where(
                    VersionRow.res_type == "Patient", VersionRow.res_id == patient_id
                )
            ).scalar_one()
    finally:
        database.dispose()


def _processed(database_url: str, event_id: str) -> int:
    database = Database(database_url)
    try:
        with database.read() as session:
            return session.execute(
                select(func.count()).where(ProcessedEvent.event_id == event_id)
            ).scalar_one()
    finally:
        database.dispose()


async def test_dead_letters_are_listed_shown_and_redriven_once_by_their_own_service(
    kafka_broker: Broker, topic_prefix: str, three: dict[str, Any]
):
    pid = f"late-{uuid.uuid4().hex[:8]}"
    event = _id_only_event(pid)
    bootstrap = kafka_broker.bootstrap
    # Intake does not have the patient yet: both consumers fail to fetch it and dead-letter
    # it. A message that is no event at all goes to outcomes' Appointment dead letters.
    await produce(
        bootstrap,
        f"{topic_prefix}Patient",
        [(f"Patient/{pid}".encode(), json.dumps(event).encode(), [])],
    )
    await produce(bootstrap, f"{topic_prefix}Appointment", [(None, b"not an event", [])])
    await read_topic(bootstrap, f"{topic_prefix}Patient.dlq", count=2, timeout=60)
    await read_topic(bootstrap, f"{topic_prefix}Appointment.dlq", count=1, timeout=60)
    scheduling_env, outcomes_env = three["env"]["scheduling"], three["env"]["outcomes"]
    scheduling_db = three["databases"]["scheduling"]

    listed = answer("scheduling", "dlq", "list", env=scheduling_env)
    assert [(d["id"], d["subject"], d["eventType"]) for d in listed] == [
        (event["id"], f"Patient/{pid}", "fhir.Patient.created")
    ]
    (letter,) = listed
    assert letter["consumer"] == f"{topic_prefix}scheduling-replicas"
    assert letter["sourceTopic"] == f"{topic_prefix}Patient"
    assert letter["topic"] == f"{topic_prefix}Patient.dlq"
    assert letter["attempts"] == 2 and letter["sourceOffset"] == 0
    assert "404" in letter["error"] and letter["redriven"] is False
    # Outcomes sees its own two, scheduling none of them.
    theirs = answer("outcomes", "dlq", "list", env=outcomes_env)
    assert sorted(d["sourceTopic"] for d in theirs) == [
        f"{topic_prefix}Appointment",
        f"{topic_prefix}Patient",
    ]
    poison = next(d for d in theirs if d["eventId"] is None)
    assert poison["error"].startswith("poison: not JSON")
    # Scheduling owns Appointment: it consumes no such topic, so has no such dead letters.
    owned = command("scheduling", "dlq", "list", "--topic", "Appointment", env=scheduling_env)
    assert owned.returncode == 1
    assert (
        owned.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "scheduling dlq: Appointment is not a topic this service consumes (it consumes "
        )
    )
    refused = command("scheduling", "dlq", "show", "--id", poison["id"], env=scheduling_env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"scheduling dlq: no dead letter of {topic_prefix}scheduling-replicas has id {poison['id']}"
    )

    shown = answer("scheduling", "dlq", "show", "--id", event["id"], env=scheduling_env)
    assert shown["envelope"] == event  # (an id-only event: no data to leave out)
    assert shown["headers"]["dlq_consumer"] == f"{topic_prefix}scheduling-replicas"

    # Redriving before the cause is fixed fails, says why, and leaves it to redrive later.
    failed = command("scheduling", "dlq", "redrive", "--json", env=scheduling_env)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["failed"][0]["id"] == event["id"]
    assert _versions(scheduling_db, pid) == 0

    # The fix: the patient arrives at intake. Scheduling's redrive applies it, once.
    created = httpx.put(f"{three['intake']}/Patient/{pid}", json={**patient(), "id": pid})
    assert created.status_code == 201, created.text
    report = answer("scheduling", "dlq", "redrive", env=scheduling_env)
    assert [e["id"] for e in report["redriven"]] == [event["id"]]
    assert report["failed"] == [] and report["alreadyApplied"] == []
    assert _versions(scheduling_db, pid) == 1
    assert _processed(scheduling_db, event["id"]) == 1
    again = answer("scheduling", "dlq", "redrive", env=scheduling_env)
    assert again == {"redriven": [], "alreadyApplied": [], "failed": [], "unreadable": []}
    by_id = answer("scheduling", "dlq", "redrive", "--id", event["id"], env=scheduling_env)
    assert [e["id"] for e in by_id["alreadyApplied"]] == [event["id"]]
    assert _versions(scheduling_db, pid) == 1
    assert answer("scheduling", "dlq", "list", env=scheduling_env)[0]["redriven"] is True

    # Outcomes' own dead letter was left alone; its redrive applies it and names the poison.
    outcomes_db = three["databases"]["outcomes"]
    assert _versions(outcomes_db, pid) == 0
    assert not any(d["redriven"] for d in answer("outcomes", "dlq", "list", env=outcomes_env))
    theirs_redriven = answer("outcomes", "dlq", "redrive", env=outcomes_env)
    assert [e["id"] for e in theirs_redriven["redriven"]] == [event["id"]]
    assert [e["id"] for e in theirs_redriven["unreadable"]] == [poison["id"]]
    assert _versions(outcomes_db, pid) == 1
    human = command("outcomes", "dlq", "redrive", env=outcomes_env)
    assert human.returncode == 0
    assert human.stdout.strip().splitlines()[-1] == (
        "redrive done: 0 redriven, 0 alreadyApplied, 0 failed, 0 unreadable"
    )


# ---- reindex -------------------------------------------------------------------------------
def _corrupt_patient_index(database_url: str) -> None:
    """What a search-parameter change leaves: string rows gone, token rows wrong."""
    database = Database(database_url)
    try:
        with database.write() as session:
            session.execute(delete(StringIndex).where(StringIndex.res_type == "Patient"))
            session.execute(
                update(TokenIndex).where(TokenIndex.res_type == "Patient").values(code="x")
            )
    finally:
        database.dispose()


async def _ids(client: httpx.AsyncClient, query: str) -> set[str]:
    response = await client.get(f"/Patient?{query}&_count=1000&_elements=id")
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


@BACKENDS
async def test_reindex_restores_search_results(intake: httpx.AsyncClient, database_url: str):
    families = ("Smith", "Jones", "Smith")
    ids = [
        (await intake.post("/Patient", json=patient(family))).json()["id"] for family in families
    ]
    smiths = {ids[0], ids[2]}
    deleted = (await intake.post("/Patient", json=patient("Smith"))).json()["id"]
    assert (await intake.delete(f"/Patient/{deleted}")).status_code in (200, 204)
    assert await _ids(intake, "name=smith") == smiths
    assert await _ids(intake, "gender=male") == set(ids)
    _corrupt_patient_index(database_url)
    assert await _ids(intake, "name=smith") == set()
    assert await _ids(intake, "gender=male") == set()

    env = _env("intake", database_url)
    done = command("intake", "reindex", "--type", "Patient", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "reindexed 3 Patient resource(s)",
        "reindex done: 3 resource(s) of 1 type(s)",
    ]
    assert "reindex Patient [" in done.stderr and "3/3" in done.stderr
    assert await _ids(intake, "name=smith") == smiths
    assert await _ids(intake, "gender=male") == set(ids)
    assert await _ids(intake, "name=jones") == {ids[1]}
    # All types at once, as JSON.
    everything = answer("intake", "reindex", env=env)["reindexed"]
    assert everything["Patient"] == 3 and "Organization" in everything


@BACKENDS
async def test_reindex_rebuilds_projections(outcomes: httpx.AsyncClient, database_url: str):
    """Outcomes' timeline tables follow the resources again: missing, wrong and orphan rows."""
    types = TimelineRows(make_settings("outcomes", database_url).canonical_base).session_type
    for appointment_id in ("a1", "a2"):
        body = {
            **appointment("p1"),
            "serviceType": [{"coding": [{"system": types, "code": "emdr"}]}],
        }
        replicate(outcomes, "Appointment", appointment_id, body)
    database = Database(database_url)
    try:
        with database.write() as session:
            session.execute(delete(SESSIONS).where(SESSIONS.c.appointment_id == "a1"))
            session.execute(update(SESSIONS).values(status="cancelled"))
            session.execute(
                insert(SESSIONS).values(appointment_id="ghost", patient_id="p1", status="booked")
            )
        done = command(
            "outcomes", "reindex", "--type", "Appointment", env=_env("outcomes", database_url)
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "reindexed 2 Appointment resource(s)"
        with database.read() as session:
            rows = session.execute(select(SESSIONS.c.appointment_id, SESSIONS.c.status)).all()
        assert sorted(rows) == [("a1", "booked"), ("a2", "booked")]
    finally:
        database.dispose()


@BACKENDS
async def test_a_reindex_killed_half_way_resumes(intake: httpx.AsyncClient, database_url: str):
    count = 240
    for n in range(count):
        created = await intake.post("/Patient", json=patient(f"Family{n % 7}"))
        assert created.status_code == 201
    _corrupt_patient_index(database_url)
    env = _env("intake", database_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "reindex", "--type", "Patient", "--batch", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Killed (no clean-up of any kind) once a tenth is done.
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("reindex Patient [===") and not line.rstrip().endswith("0/240"):
                process.kill()
                break
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9
    database = Database(database_url)
    try:
        with database.read() as session:
            progress = session.execute(select(ReindexProgress)).scalars().one()
            assert progress.res_type == "Patient" and 0 < progress.done < count
            half_way = progress.done
    finally:
        database.dispose()

    resumed = command("intake", "reindex", "--type", "Patient", "--batch", "50", env=env)
    assert resumed.returncode == 0, resumed.stderr
    first = next(x for x in resumed.stderr.splitlines() if x.startswith("reindex Patient"))
    assert first.endswith(f" {half_way}/{count}")
    assert resumed.stdout.strip().splitlines()[0] == f"reindexed {count} Patient resource(s)"
    assert len(await _ids(intake, "gender=male")) == count
    assert len(await _ids(intake, "name=family3")) == len(range(3, count, 7))
    database = Database(database_url)
    try:
        with database.read() as session:
            assert session.execute(select(func.count()).select_from(ReindexProgress)).scalar() == 0
    finally:
        database.dispose()


# ---- outbox status -------------------------------------------------------------------------
async def test_outbox_status_counts_the_backlog_and_names_the_relays_last_error(
    kafka_broker: Broker,
    topic_prefix: str,
    service_client: Callable[..., httpx.AsyncClient],
    database_url: str,
):
    async with service_client("intake", topic_prefix=topic_prefix) as intake:
        for _ in range(3):
            assert (await intake.post("/Patient", json=patient())).status_code == 201
    env = _env("intake", database_url, topic_prefix=topic_prefix)
    status = answer("intake", "outbox", "status", env=env)
    # Each write has its AuditEvent; nothing is relayed without a relay.
    assert status["backlog"] == 6
    assert status["backlogByTopic"] == {f"{topic_prefix}AuditEvent": 3, f"{topic_prefix}Patient": 3}
    assert status["oldestUnsentAgeSeconds"] >= 0 and status["oldestUnsent"].endswith("Z")
    assert status["lastSent"] is None and status["lastError"] is None
    assert status["sequences"] == {}

    # A relay with no broker to reach records why it cannot publish.
    nowhere = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    nowhere["KAFKA_REQUEST_TIMEOUT_MS"] = "1000"
    relay = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "relay"],
        cwd=ROOT,
        env=nowhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = await eventually(
            lambda: (s := answer("intake", "outbox", "status", env=env))["lastError"] and s,
            timeout=60,
            interval=1,
            what="the relay's error recorded",
        )
    finally:
        relay.terminate()
        relay.wait(timeout=30)
    assert status["backlog"] == 6 and status["lastErrorAt"].endswith("Z")
    human = command("intake", "outbox", "status", env=env)
    assert human.returncode == 0
    assert human.stdout.splitlines()[0] == "backlog: 6 unsent row(s)"
    assert any(line.startswith("last relay error: ") for line in human.stdout.splitlines())

    # With the broker, everything goes out, numbered per topic.
    working = {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    relay = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "relay"],
        cwd=ROOT,
        env=working,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=3, timeout=60)
        status = await eventually(
            lambda: (s := answer("intake", "outbox", "status", env=env))["backlog"] == 0 and s,
            timeout=60,
            interval=1,
            what="the outbox drained",
        )
    finally:
        relay.terminate()
        relay.wait(timeout=30)
    assert status["oldestUnsent"] is None and status["oldestUnsentAgeSeconds"] == 0
    assert status["lastSent"] is not None
    # Sequence numbers count per topic partition (one partition here).
    assert status["sequences"] == {
        f"{topic_prefix}AuditEvent[0]": 3,
        f"{topic_prefix}Patient[0]": 3,
    }


# ---- the command line itself ---------------------------------------------------------------
HELP = [
    [],
    ["serve"],
    ["migrate"],
    ["relay"],
    ["resync"],
    ["replay"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "redrive"],
    ["reindex"],
    ["outbox"],
    ["outbox", "status"],
]


def run_main(service: str, words: list[str], capsys: pytest.CaptureFixture[str]) -> tuple:
    """The command line in process (a process per call would take seconds): (code, out, err)."""
    settings_cls, factory = SERVICES[service]
    try:
        code = main(settings_cls, factory, words)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("service", ["intake", "scheduling", "outcomes"])
def test_every_command_has_help(service: str, capsys: pytest.CaptureFixture[str]):
    for words in HELP:
        code, out, _ = run_main(service, [*words, "--help"], capsys)
        assert code == 0, words
        assert out.startswith(f"usage: python -m services.{service}"), words


def test_help_as_a_process(tmp_path: Path):
    done = command("outcomes", "dlq", "redrive", "--help", env=_env("outcomes", "sqlite://"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m services.outcomes dlq redrive [-h]")
    assert "--id ID" in done.stdout and "--topic TOPIC" in done.stdout


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["dlq"], "the following arguments are required: ACTION"),
        (["dlq", "show"], "the following arguments are required: --id"),
        (["reindex", "--batch", "many"], "invalid int value: 'many'"),
        (["outbox", "status", "--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    code, _, err = run_main("scheduling", words, capsys)
    assert code == 2
    assert message in err.strip().splitlines()[-1]


def test_failures_are_one_line_not_a_traceback(tmp_path: Path, database_url: str):
    env = _env("scheduling", database_url)
    cases = [
        (["reindex", "--type", "Nope"], "scheduling reindex: scheduling stores no type Nope"),
        (["dlq", "list"], "scheduling dlq: KAFKA_BOOTSTRAP_SERVERS is not set"),
    ]
    for words, message in cases:
        done = command("scheduling", *words, env=env)
        assert done.returncode == 1, words
        assert done.stderr.strip().splitlines()[-1] == message
    unmigrated = _env("scheduling", f"sqlite:///{tmp_path}/empty.db")
    done = command("scheduling", "outbox", "status", env=unmigrated)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("scheduling outbox failed: OperationalError")
    broken = {**env, "SCHEDULING_DEFAULT_PAGE_SIZE": "lots"}
    done = command("scheduling", "outbox", "status", env=broken)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "scheduling: setting default_page_size: Input should be a valid integer, unable to "
        "parse string as an integer"
    ]


def test_the_old_command_names_still_work(tmp_path: Path):
    env = _env("intake", f"sqlite:///{tmp_path}/fresh.db")
    done = command("intake", "migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "intake: database schema is up to date"
    database = Database(f"sqlite:///{tmp_path}/fresh.db")
    try:
        with database.read() as session:
            assert session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        database.dispose()
