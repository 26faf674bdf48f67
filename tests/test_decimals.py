"""Exact decimals: a decimal's text (its precision) survives every path, and search compares
numerically with the precision rules of FHIR search."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import random
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import OutboxRow
from shared.events.catchup import resync_from_owner
from shared.events.envelope import parse_event, with_sequence
from shared.fhir import exact_json
from shared.fhir.number_keys import from_key, order_key
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.factories import observation as _observation
from tests.measures_support import known_patient
from tests.outbox_rows import RESOURCE_EVENTS
from tests.search_helpers import include_ids, match_ids
from tooling.postgres import PostgresCluster

# As sent; a double would turn them into 1.5, 0.1, 100.0, 100.0, -0.0 and 1.2345678901234568e26.
SENT = ["1.50", "0.1000", "100", "1.0e2", "-0.0", "123456789012345678901234567.890"]
_VALUE = re.compile(r'"value":(-?[0-9][0-9.eE+\-]*)')


# A code outcomes does not check (not in its measures file): these Observations carry decimals
# no measure would take (1e26, -1.55), and are about keeping their text, not about scores.
UNCHECKED = "2339-0"


def observation(**extra: Any) -> dict[str, Any]:
    return _observation(code=UNCHECKED, **extra)


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patient of these Observations (p1), as intake's event would."""
    known_patient(outcomes, "p1")
    return outcomes


def _raw(resource: dict[str, Any], texts: dict[str, str]) -> bytes:
    """JSON of `resource` with the "@name@" placeholders replaced by raw number text."""
    body = json.dumps(resource)
    for name, text in texts.items():
        body = body.replace(f'"@{name}@"', text)
    return body.encode()


def _observation_body(**extra: Any) -> bytes:
    """An Observation with valueQuantity.value SENT[0] and one component per SENT value."""
    resource = observation(**extra)
    resource["valueQuantity"]["value"] = "@0@"
    resource["component"] = [
        {"code": {"text": f"c{i}"}, "valueQuantity": {"value": f"@{i}@", "unit": "mg"}}
        for i in range(len(SENT))
    ]
    return _raw(resource, {str(i): text for i, text in enumerate(SENT)})


def _values(text: str) -> list[str]:
    return _VALUE.findall(text)


async def _post(client: httpx.AsyncClient, body: bytes, res_type: str = "Observation") -> str:
    response = await client.post(f"/{res_type}", content=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    assert _values(response.text) == [SENT[0], *SENT]
    return response.json()["id"]


@BACKENDS
async def test_decimals_read_back_as_sent_on_every_read_path(outcomes: httpx.AsyncClient):
    oid = await _post(outcomes, _observation_body())
    exact = [SENT[0], *SENT]
    assert _values((await outcomes.get(f"/Observation/{oid}")).text) == exact
    assert _values((await outcomes.get(f"/Observation/{oid}/_history/1")).text) == exact
    assert _values((await outcomes.get(f"/Observation/{oid}/_history")).text) == exact
    assert _values((await outcomes.get("/Observation/_history")).text) == exact
    assert _values((await outcomes.get("/Observation", params={"_id": oid})).text) == exact

    # Included resources come from their own stored text.
    panel = observation(hasMember=[{"reference": f"Observation/{oid}"}])
    panel["valueQuantity"]["value"] = "@v@"
    pid = await _create_raw(outcomes, _raw(panel, {"v": "2.000"}))
    bundle = await outcomes.get(
        "/Observation", params={"_id": pid, "_include": "Observation:has-member"}
    )
    assert include_ids(bundle.json()) == [oid]
    assert _values(bundle.text) == ["2.000", *exact]

    # PATCH keeps the untouched decimals and writes the patch's own as given.
    ops = b'[{"op": "replace", "path": "/valueQuantity/value", "value": 7.250}]'
    patched = await outcomes.patch(
        f"/Observation/{oid}",
        content=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert _values(patched.text) == ["7.250", *SENT]
    assert _values((await outcomes.get(f"/Observation/{oid}")).text) == ["7.250", *SENT]

    # An update (PUT) stores the body's text too.
    put = await outcomes.put(
        f"/Observation/{oid}", content=_observation_body(id=oid), headers=FHIR_JSON
    )
    assert put.status_code == 200, put.text
    assert _values(put.text) == exact
    assert _values((await outcomes.get(f"/Observation/{oid}/_history/3")).text) == exact


async def _create_raw(client: httpx.AsyncClient, body: bytes) -> str:
    response = await client.post("/Observation", content=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@BACKENDS
async def test_transaction_and_batch_responses_keep_decimal_text(outcomes: httpx.AsyncClient):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": "@r@",
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    # The entry's resource is spliced in as raw text.
    raw = json.dumps(bundle).replace('"@r@"', _observation_body().decode()).encode()
    answer = await outcomes.post("/", content=raw, headers=FHIR_JSON)
    assert answer.status_code == 200, answer.text
    entry = answer.json()["entry"][0]
    assert entry["response"]["status"].startswith("201")
    oid = entry["response"]["location"].split("/")[1]
    assert _values(answer.text) == [SENT[0], *SENT]
    assert _values((await outcomes.get(f"/Observation/{oid}")).text) == [SENT[0], *SENT]
    # A batch GET of it answers with the stored text.
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Observation/{oid}"}}],
    }
    got = await outcomes.post("/", json=batch, headers=FHIR_JSON)
    assert _values(got.text) == [SENT[0], *SENT]


def _decimal_patient(texts: dict[str, str]) -> bytes:
    extensions = [{"url": f"urn:x:{name}", "valueDecimal": f"@{name}@"} for name in texts]
    return _raw(patient(extension=extensions), texts)


@BACKENDS
async def test_event_payload_and_replica_keep_decimal_text(
    intake: httpx.AsyncClient, scheduling: httpx.AsyncClient
):
    texts = {str(i): text for i, text in enumerate(SENT)}
    created = await intake.post("/Patient", content=_decimal_patient(texts), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    database = intake._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        payload = session.execute(select(OutboxRow.payload).where(RESOURCE_EVENTS)).scalar_one()
    value_decimals = re.findall(r'"valueDecimal":([^,}]+)', payload)
    assert value_decimals == SENT
    # The published message, delivered to scheduling's replica. Both services share the test's
    # database, so the id is renamed to one the replica has not seen (text stays untouched).
    replica_id = "replica-copy"
    message = with_sequence(payload.replace(pid, replica_id), 1)
    app = scheduling._transport.app  # type: ignore[attr-defined]
    with app.state.fhir.database.write() as session:
        assert app.state.events.writer.apply_event(session, parse_event(message))
    read = await scheduling.get(f"/Patient/{replica_id}")
    assert read.status_code == 200, read.text
    assert re.findall(r'"valueDecimal":([^,}]+)', read.text) == SENT


async def test_resync_from_the_owners_history_keeps_decimal_text(scheduling: httpx.AsyncClient):
    resource = _decimal_patient({"a": "0.1000", "b": "1.0e2"}).decode()
    resource = resource[:-1] + ', "id": "rp1", "meta": {"versionId": "2"}}'
    history = (
        '{"resourceType": "Bundle", "type": "history", "entry": [{"resource": '
        + resource
        + ', "request": {"method": "PUT", "url": "Patient/rp1"},'
        + ' "response": {"status": "200", "etag": "W/\\"2\\"",'
        + ' "lastModified": "2026-01-01T00:00:00Z"}}]}'
    )
    owner = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=history.encode()))
    )
    app = scheduling._transport.app  # type: ignore[attr-defined]
    async with owner:
        applied = await resync_from_owner(
            app.state.events.writer,
            app.state.fhir.database,
            "http://owner/fhir",
            "Patient",
            since=None,
            client=owner,
        )
    assert applied == 1
    read = await scheduling.get("/Patient/rp1")
    assert re.findall(r'"valueDecimal":([^,}]+)', read.text) == ["0.1000", "1.0e2"]


@BACKENDS
async def test_value_quantity_search_compares_numerically_with_precision(
    outcomes: httpx.AsyncClient,
):
    texts = {
        "just_below": "1.4499999999999999999",  # a double rounds it to 1.45
        "low": "1.45",
        "mid": "1.50",
        "high": "1.54",
        "just_above": "1.5499999999999999999",  # a double rounds it to 1.55
        "top": "1.55",
        "out": "1.56",
        "p1495": "1.495",
        "p1505": "1.505",
        "big": "123456789012345678901234567.890",
        "bigger": "123456789012345678901234567.891",  # the same double as "big"
        "zero": "-0.0",
        "neg_low": "-1.55",
        "neg_high": "-1.45",
        "neg_mid": "-1.50",
        "neg_out": "-1.5500000000000000001",  # a double rounds it to -1.55
    }
    ids = {}
    for name, text in texts.items():
        resource = observation()
        resource["valueQuantity"]["value"] = "@v@"
        ids[await _create_raw(outcomes, _raw(resource, {"v": text}))] = name

    async def vq(value: str, **more: str) -> set[str]:
        response = await outcomes.get(
            "/Observation", params={"value-quantity": value, "_count": "100", **more}
        )
        assert response.status_code == 200, response.text
        return {ids[i] for i in match_ids(response.json())}

    in_15 = {"low", "mid", "high", "just_above", "p1495", "p1505"}
    assert await vq("1.5") == in_15  # [1.45, 1.55)
    assert await vq("eq1.5") == in_15
    assert await vq("1.50") == {"mid", "p1495"}  # [1.495, 1.505)
    assert await vq("1.500") == {"mid"}  # [1.4995, 1.5005)
    assert await vq("ne1.5") == set(texts) - in_15
    assert await vq("gt1.5") == {"high", "just_above", "top", "out", "p1505", "big", "bigger"}
    big = {"big", "bigger"}
    assert await vq("ge1.50") == {"mid", "high", "just_above", "top", "out", "p1505"} | big
    below = {"just_below", "zero", "neg_low", "neg_mid", "neg_high", "neg_out"}
    assert await vq("lt1.45") == below
    assert await vq("le1.45") == below | {"low"}
    assert await vq("123456789012345678901234567.890") == {"big"}
    assert await vq("gt123456789012345678901234567.890") == {"bigger"}
    assert await vq("1.23456789012345678901234567890e26") == {"big"}
    assert await vq("0") == {"zero"}
    assert await vq("-1.5") == {"neg_low", "neg_mid"}  # [-1.55, -1.45)
    assert await vq("ap1.5") == in_15 | {"just_below", "top", "out"}  # [1.35, 1.65]
    ordered = await outcomes.get(
        "/Observation",
        params={"value-quantity": "lt1.5", "_sort": "value-quantity", "_count": "100"},
    )
    assert [ids[i] for i in match_ids(ordered.json())] == [
        "neg_out",
        "neg_low",
        "neg_mid",
        "neg_high",
        "zero",
        "just_below",
        "low",
        "p1495",
    ]


@pytest.mark.parametrize(
    ("text", "words"), [("1e309", "too large"), ("-2e400", "too large"), ("1e-400", "too small")]
)
async def test_a_decimal_a_double_cannot_hold_is_400_naming_the_field(
    outcomes: httpx.AsyncClient, text: str, words: str
):
    resource = observation()
    resource["valueQuantity"]["value"] = "@v@"
    response = await outcomes.post(
        "/Observation", content=_raw(resource, {"v": text}), headers=FHIR_JSON
    )
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert words in issue["diagnostics"]
    assert issue["expression"] == ["Observation.valueQuantity.value"]


def test_order_keys_sort_as_the_numbers_do():
    rng = random.Random(7)
    numbers = [Decimal(t) for t in ("0", "-0.0", "1.5", "1.50", "1.51", "-1.5", "-1.51", "-10")]
    for _ in range(2000):
        digits = str(rng.randint(0, 10 ** rng.randint(1, 40)))
        numbers.append(Decimal(f"{rng.choice('-+')}{digits}e{rng.randint(-40, 40)}"))
    for a, b in itertools.pairwise(numbers):
        assert (order_key(a) < order_key(b)) == (a < b), (a, b)
        assert (order_key(a) == order_key(b)) == (a == b), (a, b)
    for number in numbers:
        assert from_key(order_key(number)) == number


def test_stored_text_parses_exactly_whatever_the_fast_path_sees():
    # Text that looks like a decimal inside strings, and decimals in arrays and after spaces.
    text = '{"a":"x\\":1.5","b":[1,2.50],"c" : 3.0e1,"d":10,"e":"1,2.5"}'
    parsed = exact_json.loads(text)
    assert parsed == {
        "a": 'x":1.5',
        "b": [1, Decimal("2.50")],
        "c": Decimal(30),
        "d": 10,
        "e": "1,2.5",
    }
    assert type(parsed["d"]) is int
    assert (
        exact_json.dumps_text(parsed)
        == '{"a":"x\\":1.5","b":[1,2.50],"c":3.0e1,"d":10,"e":"1,2.5"}'
    )
    assert exact_json.loads(b'{"n":[1,2]}') == {"n": [1, 2]}
    only_in_arrays = exact_json.loads('{"n":[1,2.50]}')["n"]
    for text in ('{"v":72.5,"w":[0.1]}', '{"v":72.5,"w":1.50}', '{"v":-0.0,"w":1e2}'):
        assert exact_json.dumps_text(exact_json.loads(text)) == text
    assert only_in_arrays == [1, Decimal("2.50")] and only_in_arrays[1].text == "2.50"
    assert exact_json.dumps(Decimal("1.5E+3")) == b"1.5E+3"
    kept = exact_json.loads('{"v":1.0e2}')
    for copied in (copy.deepcopy(kept), pickle.loads(pickle.dumps(kept))):
        assert exact_json.dumps_text(copied) == '{"v":1.0e2}'
    for bad in ('{"a": NaN}', b'{"a": Infinity}', '{"a": 1.5'):
        with pytest.raises(ValueError):
            exact_json.loads(bad)


def test_the_envelope_refuses_non_json_numbers():
    good = {
        "id": str(uuid.uuid4()),
        "type": "fhir.Patient.created",
        "subject": "Patient/p1",
        "versionid": "1",
        "data": {"resourceType": "Patient", "id": "p1", "x": "@v@"},
    }
    with pytest.raises(ValueError, match="not JSON"):
        parse_event(_raw(good, {"v": "NaN"}))
    assert parse_event(_raw(good, {"v": "2.50"})).data["x"] == Decimal("2.50")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0004_turns_stored_floats_into_exact_keys(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database("decimal_migration")
    else:
        url = f"sqlite:///{tmp_path}/migration.db"
    database = Database(url)
    try:
        upgrade(database, "0003")
        floats = [5.4, -1.25, 1e300, 0.0, 100.0, -0.5]
        insert = sa.text(
            "INSERT INTO idx_quantity (resource_pk, res_type, param, value)"
            " VALUES (:pk, 'Observation', 'value-quantity', :value)"
        )
        with database.write_engine.begin() as connection:
            connection.execute(insert, [{"pk": i, "value": v} for i, v in enumerate(floats)])
        upgrade(database)
        with database.write_engine.begin() as connection:
            query = "SELECT value_key FROM idx_quantity ORDER BY value_key"
            keys = connection.execute(sa.text(query))
            assert [float(from_key(k)) for (k,) in keys] == sorted(floats)
            if backend == "postgres":
                # Byte order is numeric order only under the "C" collation.
                collation = connection.execute(
                    sa.text(
                        "SELECT collation_name FROM information_schema.columns"
                        " WHERE table_name = 'idx_quantity' AND column_name = 'value_key'"
                    )
                ).scalar_one()
                assert collation == "C"
    finally:
        database.dispose()
