"""`POST Patient/$import`: a patient fetched from an allow-listed EHR and upserted at intake.

The EHR is a real second FHIR server (an intake process) for the round trip, and tiny threaded
HTTP servers for the failures (slow, 404, 5xx, 429, redirects, invalid FHIR). Every failure
answers an OperationOutcome naming the source and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.auth_support import bearer, mint, process_auth, staff_headers, staff_token
from tests.conftest import BACKENDS
from tests.fhir_asserts import assert_outcome
from tests.issuer_support import AUDIENCES, running_issuer
from tests.outbox_rows import RESOURCE_EVENTS
from tooling.dev_issuer import client_key_file
from tooling.ports import free_port
from tooling.service_process import ServiceProcess

SYSTEM = "urn:oid:2.16.840.1.113883.2.4.6.3"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
# Short enough to keep the module quick, long enough for a loaded machine's loopback.
FAST = {
    "ehr_timeout_s": 0.5,
    "ehr_deadline_s": 4.0,
    "ehr_backoff_s": 0.05,
    "ehr_max_attempts": 3,
}


def import_body(source: str, value: str = "123", system: str = SYSTEM) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source", "valueUrl": source},
            {"name": "identifier", "valueString": f"{system}|{value}"},
        ],
    }


def a_patient(value: str = "123", family: str = "Jansen", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "ehr-1",
        "meta": {"versionId": "7", "source": "urn:the-ehr"},
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": family, "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1980-04-02",
        **extra,
    }


def searchset(*patients: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(patients),
        "entry": [{"resource": p, "search": {"mode": "match"}} for p in patients],
    }


# ---- stand-in EHRs ---------------------------------------------------------------------
@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]


class Scripted:
    """A threaded HTTP server answering GETs with its replies in turn (the last repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                script.seen.append(Seen(time.monotonic(), self.path, dict(self.headers)))
                reply = script.replies.pop(0) if len(script.replies) > 1 else script.replies[0]
                time.sleep(reply.delay)
                body = reply.body
                data = json.dumps(body).encode() if isinstance(body, dict) else body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (the slow case)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def __enter__(self) -> Scripted:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class ConnectionRecorder:
    """A TCP listener that only counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> ConnectionRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static bearer token intake sends the real EHR (the suite's staff token)."""
    path = tmp_path_factory.mktemp("ehr-auth") / "token"
    path.write_text(staff_token() + "\n")
    return path


@pytest.fixture(scope="module")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real FHIR server standing in for the EHR: an intake process on a free port."""
    data_dir = tmp_path_factory.mktemp("ehr")
    with ServiceProcess(
        "intake",
        port=free_port(),
        data_dir=str(data_dir),
        env={"KAFKA_BOOTSTRAP_SERVERS": ""},
        **process_auth(),
    ) as running:
        yield running


Importer = Callable[..., httpx.AsyncClient]


@pytest.fixture
def importer(service_client: Callable[..., httpx.AsyncClient]) -> Importer:
    """Factory: intake under test, allowed to import from `sources` (base -> auth config)."""

    def build(sources: dict[str, dict[str, Any]], **overrides: Any) -> httpx.AsyncClient:
        return service_client("intake", ehr_sources=sources, **{**FAST, **overrides})

    return build


async def stored_patients(client: httpx.AsyncClient) -> int:
    response = await client.get("/Patient", params={"_summary": "count"})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def assert_failed(response: httpx.Response, status: int, code: str, source: str) -> str:
    """A clear OperationOutcome naming the source and echoing no patient data."""
    issue = assert_outcome(response, status, code)
    diagnostics = issue["diagnostics"]
    assert source in diagnostics, diagnostics
    for patient_data in ("Jansen", "Anna", "1980-04-02", "123"):
        assert patient_data not in response.text.replace(source, ""), response.text
    return diagnostics


def outputs(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "Parameters", body
    return {p["name"]: p.get("valueCode", p.get("resource")) for p in body["parameter"]}


# ---- the round trip with a real FHIR server --------------------------------------------
@BACKENDS
async def test_import_creates_then_updates_and_never_duplicates(
    ehr: ServiceProcess, token_file: Path, importer: Importer
) -> None:
    base = f"{ehr.url}/fhir"
    async with httpx.AsyncClient(base_url=base, headers=staff_headers(), timeout=30) as at_ehr:
        value = f"rt-{time.monotonic_ns()}"
        seeded = await at_ehr.post("/Patient", json=a_patient(value), headers=FHIR_JSON)
        assert seeded.status_code == 201, seeded.text
        ehr_copy = seeded.json()
        async with importer({base: {"auth": "bearer", "token_file": str(token_file)}}) as intake:
            # A trailing slash names the same allowed base.
            first = await intake.post(
                "/Patient/$import", json=import_body(base + "/", value), headers=FHIR_JSON
            )
            assert first.status_code == 201, first.text
            out = outputs(first)
            assert out["outcome"] == "created"
            patient = out["patient"]
            # The EHR's identifiers and demographics, our id and meta.
            assert patient["identifier"] == ehr_copy["identifier"]
            assert patient["name"] == ehr_copy["name"]
            assert patient["birthDate"] == "1980-04-02"
            assert patient["id"] != ehr_copy["id"]
            assert patient["meta"]["versionId"] == "1"
            assert "source" not in patient["meta"]
            read = await intake.get(f"/Patient/{patient['id']}")
            assert read.status_code == 200 and read.json()["name"] == ehr_copy["name"]

            again = await intake.post(
                "/Patient/$import", json=import_body(base, value), headers=FHIR_JSON
            )
            assert again.status_code == 200, again.text
            assert outputs(again)["outcome"] == "updated"
            assert outputs(again)["patient"]["id"] == patient["id"]

            # Demographics change at the EHR; the next import carries them over.
            changed = {**ehr_copy, "name": [{"family": "De Vries", "given": ["Anna"]}]}
            put = await at_ehr.put(f"/Patient/{ehr_copy['id']}", json=changed, headers=FHIR_JSON)
            assert put.status_code == 200, put.text
            third = await intake.post(
                "/Patient/$import", json=import_body(base, value), headers=FHIR_JSON
            )
            assert third.status_code == 200, third.text
            updated = outputs(third)["patient"]
            assert updated["id"] == patient["id"]
            assert updated["name"][0]["family"] == "De Vries"
            assert updated["meta"]["versionId"] == "3"

            found = await intake.get("/Patient", params={"identifier": f"{SYSTEM}|{value}"})
            assert found.json()["total"] == 1
            assert await stored_patients(intake) == 1

            unknown = await intake.post(
                "/Patient/$import", json=import_body(base, "nobody-has-this"), headers=FHIR_JSON
            )
            assert_failed(unknown, 422, "not-found", base)
            assert await stored_patients(intake) == 1


async def test_the_real_ehr_refuses_an_import_without_its_token(
    ehr: ServiceProcess, importer: Importer
) -> None:
    base = f"{ehr.url}/fhir"
    async with importer({base: {"auth": "none"}}) as intake:
        response = await intake.post("/Patient/$import", json=import_body(base), headers=FHIR_JSON)
        assert "credentials (401)" in assert_failed(response, 502, "transient", base)
        assert await stored_patients(intake) == 0


async def test_smart_backend_services_credentials_reach_the_ehr(
    importer: Importer, tmp_path: Path
) -> None:
    with (
        running_issuer(tmp_path / "dev-auth") as issuer,
        Scripted(Reply(body=searchset(a_patient()))) as ehr,
    ):
        source = {
            "auth": "smart",
            "client_id": "kemdr-intake",
            "key_file": str(client_key_file(issuer.directory, "kemdr-intake")),
            "issuer": issuer.url,
        }
        async with importer({ehr.base: source}) as intake:
            for expected in (201, 200):
                response = await intake.post(
                    "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
                )
                assert response.status_code == expected, response.text
        sent = [seen.headers["Authorization"].removeprefix("Bearer ") for seen in ehr.seen]
        # One token, reused by the second import (each token has its own jti).
        assert len(sent) == 2 and sent[0] == sent[1]
        jwks = jwt.PyJWKSet.from_dict(issuer.jwks())
        key = jwks[jwt.get_unverified_header(sent[0])["kid"]].key
        granted = jwt.decode(sent[0], key, algorithms=["RS256"], audience=AUDIENCES[1])
        assert (granted["client_id"], granted["scope"]) == ("kemdr-intake", "system/Patient.rs")


# ---- the allow-list --------------------------------------------------------------------
async def test_a_source_off_the_list_is_never_contacted(importer: Importer) -> None:
    with ConnectionRecorder() as elsewhere, Scripted(Reply(body=searchset(a_patient()))) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            for source in (
                elsewhere.base,
                elsewhere.base + "/",
                # The allowed base is not a prefix that admits anything below it.
                ehr.base + "/../x",
                ehr.base + "?x=1",
            ):
                response = await intake.post(
                    "/Patient/$import", json=import_body(source), headers=FHIR_JSON
                )
                issue = assert_outcome(response, 422, "security")
                assert "INTAKE_EHR_SOURCES" in issue["diagnostics"]
                assert issue["expression"] == ["source"]
            time.sleep(0.2)  # room for a connection to be noticed, were one made
            assert elsewhere.connections == 0
            assert ehr.seen == []
            assert await stored_patients(intake) == 0


async def test_a_redirect_off_the_list_is_not_followed(importer: Importer) -> None:
    with ConnectionRecorder() as elsewhere:
        moved = Reply(302, headers={"Location": f"{elsewhere.base}/Patient?identifier=x"})
        with Scripted(moved) as ehr:
            async with importer({ehr.base: {"auth": "none"}}) as intake:
                response = await intake.post(
                    "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
                )
                assert "redirect" in assert_failed(response, 502, "transient", ehr.base)
                time.sleep(0.2)
                assert elsewhere.connections == 0
                assert len(ehr.seen) == 1
                assert await stored_patients(intake) == 0


# ---- an EHR that fails -----------------------------------------------------------------
async def test_an_ehr_that_is_down_is_a_502(importer: Importer) -> None:
    down = f"http://127.0.0.1:{free_port()}/fhir"
    async with importer({down: {"auth": "none"}}) as intake:
        response = await intake.post("/Patient/$import", json=import_body(down), headers=FHIR_JSON)
        assert "could not be reached" in assert_failed(response, 502, "transient", down)
        assert await stored_patients(intake) == 0


async def test_a_slow_ehr_is_a_504_within_the_time_out(importer: Importer) -> None:
    # The EHR answers after 10 s; the 0.5 s time-out answers long before (the bound leaves a
    # loaded machine room: it only has to show the reply was not waited for).
    with Scripted(Reply(body=searchset(a_patient()), delay=10.0)) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            started = time.monotonic()
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert time.monotonic() - started < 6.0
            assert_failed(response, 504, "timeout", ehr.base)
            # A time-out is not retried: a slow EHR would only be slower.
            assert len(ehr.seen) == 1
            assert await stored_patients(intake) == 0


async def test_a_slow_ehr_holds_no_transaction_at_intake(importer: Importer) -> None:
    with Scripted(Reply(body=searchset(a_patient()), delay=1.0)) as ehr:
        async with importer({ehr.base: {"auth": "none"}}, ehr_timeout_s=3.0) as intake:
            importing = asyncio.create_task(
                intake.post("/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON)
            )
            while not ehr.seen:
                await asyncio.sleep(0.01)
            # The fetch is under way: another write is not kept waiting for it.
            started = time.monotonic()
            other = await intake.post("/Patient", json=a_patient("other"), headers=FHIR_JSON)
            assert other.status_code == 201, other.text
            assert time.monotonic() - started < 0.8
            assert not importing.done()
            assert (await importing).status_code == 201
            assert await stored_patients(intake) == 2


async def test_a_404_is_a_502_because_the_base_is_wrong_not_the_request(
    importer: Importer,
) -> None:
    with Scripted(Reply(404, b"not here")) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert "(404)" in assert_failed(response, 502, "transient", ehr.base)
            assert await stored_patients(intake) == 0


@pytest.mark.parametrize("busy", [500, 429])
async def test_retry_after_is_honoured_then_the_import_succeeds(
    busy: int, importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EHR_TOKEN", "static-ehr-token")
    replies = (Reply(busy, headers={"Retry-After": "1"}), Reply(body=searchset(a_patient())))
    with Scripted(*replies) as ehr:
        source = {"auth": "bearer", "token_env": "TEST_EHR_TOKEN"}
        # A roomier per-request time-out than FAST's: on a loaded machine a 0.5 s one can
        # expire and add a third request this test does not expect.
        roomy = {"ehr_timeout_s": 3.0, "ehr_deadline_s": 10.0}
        async with importer({ehr.base: source}, **roomy) as intake:
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert response.status_code == 201, response.text
            assert outputs(response)["outcome"] == "created"
            first, second = ehr.seen
            assert second.at - first.at >= 0.95
            assert first.path == second.path
            assert first.path.startswith("/fhir/Patient?identifier=")
            assert first.headers["Authorization"] == "Bearer static-ehr-token"
            assert await stored_patients(intake) == 1
            # Written through Interactions: audited and published like any create.
            pid = outputs(response)["patient"]["id"]
            audit = await intake.get("/AuditEvent", params={"entity": f"Patient/{pid}"})
            assert audit.json()["total"] >= 1, audit.text
            database = intake._transport.app.state.fhir.database  # type: ignore[attr-defined]
            with database.read() as session:
                query = select(OutboxRow.topic).where(RESOURCE_EVENTS)
                assert session.execute(query).scalars().all() == ["fhir.Patient"]


async def test_5xx_after_every_try_is_a_502(importer: Importer) -> None:
    with Scripted(Reply(500, b"boom")) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert "500 after 3 tries" in assert_failed(response, 502, "transient", ehr.base)
            assert len(ehr.seen) == 3
            assert await stored_patients(intake) == 0


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(importer: Importer) -> None:
    with Scripted(Reply(429, headers={"Retry-After": "60"})) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            started = time.monotonic()
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert time.monotonic() - started < 10.0  # not the 60 s asked for
            assert "429 after 1 tries" in assert_failed(response, 502, "transient", ehr.base)
            assert len(ehr.seen) == 1


# ---- what the EHR answers --------------------------------------------------------------
async def test_invalid_fhir_from_the_ehr_is_a_422_and_stores_nothing(importer: Importer) -> None:
    broken = a_patient(birthDate="2nd of April", gender="sometimes")
    with Scripted(Reply(body=searchset(broken))) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert "not valid FHIR R4" in assert_failed(response, 422, "invalid", ehr.base)
            # The fields at fault are named, not their values.
            paths = [e for i in response.json()["issue"][1:] for e in i.get("expression", [])]
            assert paths, response.text
            assert "2nd of April" not in response.text
            assert await stored_patients(intake) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>maintenance</html>", "not JSON"),
        ({"resourceType": "Patient"}, "not a FHIR Bundle"),
        (searchset(a_patient(value="someone-else")), "does not carry that identifier"),
    ],
)
async def test_an_answer_that_is_not_a_searchset_of_the_patient_is_a_502(
    body: bytes | dict[str, Any], why: str, importer: Importer
) -> None:
    with Scripted(Reply(body=body)) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            issue = assert_outcome(response, 502, response.json()["issue"][0]["code"])
            assert why in issue["diagnostics"] and ehr.base in issue["diagnostics"]
            assert await stored_patients(intake) == 0


async def test_several_or_no_matches_at_the_ehr(importer: Importer) -> None:
    twins = searchset(a_patient(), {**a_patient(), "id": "ehr-2"})
    with Scripted(Reply(body=twins), Reply(body=searchset())) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            several = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert "several" in assert_failed(several, 409, "conflict", ehr.base)
            none = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers=FHIR_JSON
            )
            assert_failed(none, 422, "not-found", ehr.base)
            assert await stored_patients(intake) == 0


# ---- the caller ------------------------------------------------------------------------
async def test_a_practice_cannot_import_another_practices_patient(importer: Importer) -> None:
    theirs = a_patient(managingOrganization={"reference": "Organization/other"})
    ours = a_patient(value="456", managingOrganization={"reference": "Organization/mine"})
    with Scripted(Reply(body=searchset(theirs)), Reply(body=searchset(ours))) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            practice = bearer(mint("system/Patient.cus", "Organization/mine"))
            refused = await intake.post(
                "/Patient/$import",
                json=import_body(ehr.base),
                headers={**FHIR_JSON, **practice},
            )
            assert_outcome(refused, 403, "forbidden")
            allowed = await intake.post(
                "/Patient/$import",
                json=import_body(ehr.base, "456"),
                headers={**FHIR_JSON, **practice},
            )
            assert allowed.status_code == 201, allowed.text
            assert await stored_patients(intake) == 1


async def test_import_needs_its_scope_and_a_well_formed_identifier(importer: Importer) -> None:
    with Scripted(Reply(body=searchset(a_patient()))) as ehr:
        async with importer({ehr.base: {"auth": "none"}}) as intake:
            reader = bearer(mint("system/Patient.rs"))
            response = await intake.post(
                "/Patient/$import", json=import_body(ehr.base), headers={**FHIR_JSON, **reader}
            )
            assert_outcome(response, 403, "forbidden")
            body = import_body(ehr.base)
            body["parameter"][1]["valueString"] = "no-bar"
            response = await intake.post("/Patient/$import", json=body, headers=FHIR_JSON)
            assert_outcome(response, 400, "invalid")
            assert ehr.seen == []
