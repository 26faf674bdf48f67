"""No protected health information in application logs, whatever the log level."""

from __future__ import annotations

import asyncio
import logging
import traceback

from fastapi import FastAPI

from shared.auth.audit_logs import install_log_redaction
from tests.auth_support import acting_as, principal
from tests.conftest import BACKENDS, SERVICES, make_settings
from tests.factories import FHIR_JSON, patient
from tests.kafka_support import serving

NAME = "Zyxwarbleton"
LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "sqlalchemy", "aiokafka", "alembic")


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    return text


@BACKENDS
async def test_a_patient_name_never_reaches_the_logs(database_url: str, caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    app: FastAPI = SERVICES["intake"][1](make_settings("intake", database_url))
    async with serving(app) as client:
        with acting_as(principal()):
            created = await client.post("/Patient", json=patient(NAME))
            pid = created.json()["id"]
            await client.get(f"/Patient/{pid}")
            await client.get("/Patient", params={"name": NAME})
            await client.get("/Patient", params={"family": NAME, "bogus": NAME})
            await client.post("/Patient/_search", data={"name": NAME})
            await client.put(f"/Patient/{pid}", json={**patient(NAME), "id": pid, "gender": NAME})
            await client.post("/Patient", json={**patient(NAME), "birthDate": NAME})
            await client.post(
                "/Patient", json=patient(NAME), headers={"If-None-Exist": f"name={NAME}"}
            )
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": {**patient(NAME), "gender": NAME},
                        "request": {"method": "POST", "url": "Patient"},
                    },
                    {"request": {"method": "GET", "url": f"Patient?name={NAME}"}},
                ],
            }
            await client.post("", json=bundle, headers=FHIR_JSON)
            await client.get(f"/Patient/{pid}/$everything")
            await client.delete("/Patient", params={"name": NAME})
        await asyncio.to_thread(app.state.audit.drain_all)
    assert caplog.records, "the test captured nothing"
    # The test client's own request lines (httpx) are not the service's logs.
    records = [r for r in caplog.records if r.name != "httpx"]
    leaks = [r.name + ": " + _text(r)[:200] for r in records if NAME.lower() in _text(r).lower()]
    assert not leaks, leaks


def test_the_access_log_keeps_paths_but_not_query_strings(caplog):
    install_log_redaction()
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", f"/fhir/Patient?name={NAME}", "1.1", 200
    )
    (record,) = caplog.records
    assert record.getMessage() == '10.0.0.1:5000 - "GET /fhir/Patient HTTP/1.1" 200'


async def test_an_unexpected_error_is_logged_by_place_not_by_message(
    database_url: str, caplog, monkeypatch
):
    app: FastAPI = SERVICES["intake"][1](make_settings("intake", database_url))

    def fails(*_args, **_kwargs):
        raise RuntimeError(f"could not read {NAME}, born 1970")

    monkeypatch.setattr(app.state.fhir.interactions, "read", fails)
    caplog.set_level(logging.DEBUG)
    async with serving(app) as client:
        response = await client.get("/Patient/x")
    assert response.status_code == 500
    text = "\n".join(_text(r) for r in caplog.records if r.name != "httpx")
    assert "RuntimeError at" in text and "fails" in text  # where, for whoever fixes it
    assert NAME.lower() not in text.lower()
