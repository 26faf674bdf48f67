"""Issue 11: outcomes checks each measure it knows by code (value type, UCUM unit, range,
components) and stores unknown codes as they are; the local codes are a published CodeSystem."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.outcomes.observations.measures import (
    MEASURES_FILE,
    MeasureFileError,
    load_measures,
    outcome_measures,
    parse_measures,
)
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import build_app, new_database, serving
from tests.measures_support import (
    LOCAL,
    LOINC,
    bp_panel,
    known_patient,
    quantity,
    score,
    vital,
)

__all__ = ["new_database"]


async def _post(client: httpx.AsyncClient, body: dict) -> httpx.Response:
    return await client.post("/Observation", json=body, headers=FHIR_JSON)


async def _refused(client: httpx.AsyncClient, body: dict, where: str) -> str:
    """The write is a 422 whose issue points at `where`; returns its diagnostics."""
    issue = assert_outcome(await _post(client, body), 422, "invalid", expression=True)
    assert issue["expression"] == [where]
    return issue["diagnostics"]


# ---- scores ---------------------------------------------------------------------------
@BACKENDS
@pytest.mark.parametrize(
    ("code", "system", "low", "high"),
    [
        ("44261-6", LOINC, 0, 27),  # PHQ-9
        ("70274-6", LOINC, 0, 21),  # GAD-7
        ("101698-9", LOINC, 0, 80),  # PCL-5
        ("madrs-total", LOCAL, 0, 60),
        ("cadss-total", LOCAL, 0, 92),
        ("suds", LOCAL, 0, 10),
        ("voc", LOCAL, 1, 7),
    ],
)
async def test_a_score_is_an_integer_within_its_range(
    outcomes: httpx.AsyncClient, code: str, system: str, low: int, high: int
):
    known_patient(outcomes)
    for value in (low, high):
        response = await _post(outcomes, score(code, value, system=system))
        assert response.status_code == 201, response.text
    for value in (low - 1, high + 1):
        message = await _refused(
            outcomes, score(code, value, system=system), "Observation.valueInteger"
        )
        assert message.startswith(f"{code} (")
        assert f"must be an integer from {low} to {high}; got {value}" in message


async def test_a_phq9_of_400_names_the_code_and_the_range(outcomes: httpx.AsyncClient):
    known_patient(outcomes)
    message = await _refused(outcomes, score("44261-6", 400), "Observation.valueInteger")
    assert message == "44261-6 (PHQ-9 total score) must be an integer from 0 to 27; got 400"


async def test_a_score_may_be_a_quantity_in_score_units_but_only_those(
    outcomes: httpx.AsyncClient,
):
    known_patient(outcomes)
    as_quantity = {k: v for k, v in score("44261-6", 0).items() if k != "valueInteger"}
    ok = {**as_quantity, "valueQuantity": quantity(27, "{score}")}
    assert (await _post(outcomes, ok)).status_code == 201
    # A whole number written as a decimal is still that integer.
    assert (
        await _post(outcomes, {**ok, "valueQuantity": quantity(12.0, "{score}")})
    ).status_code == 201
    high = {**as_quantity, "valueQuantity": quantity(28, "{score}")}
    assert "from 0 to 27; got 28" in await _refused(
        outcomes, high, "Observation.valueQuantity.value"
    )
    fraction = {**as_quantity, "valueQuantity": quantity(12.5, "{score}")}
    assert "got 12.5" in await _refused(outcomes, fraction, "Observation.valueQuantity.value")
    other_unit = {**as_quantity, "valueQuantity": quantity(12, "%")}
    await _refused(outcomes, other_unit, "Observation.valueQuantity.code")
    no_system = {**as_quantity, "valueQuantity": {"value": 12, "code": "{score}"}}
    await _refused(outcomes, no_system, "Observation.valueQuantity.system")
    text = {**as_quantity, "valueString": "twelve"}
    assert "not valueString" in await _refused(outcomes, text, "Observation.valueString")


async def test_a_value_is_needed_unless_the_status_or_a_reason_says_why_not(
    outcomes: httpx.AsyncClient,
):
    known_patient(outcomes)
    bare = {k: v for k, v in score("44261-6", 0).items() if k != "valueInteger"}
    assert "needs a valueInteger" in await _refused(outcomes, bare, "Observation.value[x]")
    for status in ("entered-in-error", "cancelled", "registered"):
        response = await _post(outcomes, {**bare, "status": status})
        assert response.status_code == 201, response.text
    absent = {
        **bare,
        "dataAbsentReason": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "asked-declined",
                }
            ]
        },
    }
    assert (await _post(outcomes, absent)).status_code == 201
    # A value given with such a status is still checked.
    await _refused(
        outcomes, score("44261-6", 28, status="entered-in-error"), "Observation.valueInteger"
    )


# ---- vital signs ----------------------------------------------------------------------
@BACKENDS
async def test_vital_signs_take_their_ucum_units_within_plausibility_bounds(
    outcomes: httpx.AsyncClient,
):
    known_patient(outcomes)
    good = [
        ("8867-4", 0, "/min"),
        ("8867-4", 300, "/min"),
        ("59408-5", 100, "%"),
        ("2708-6", 0, "%"),
        ("29463-7", 650, "kg"),
        ("29463-7", 0.4, "kg"),
        ("29463-7", 154.3, "[lb_av]"),
        ("29463-7", 3500, "g"),
        ("8480-6", 300, "mm[Hg]"),
    ]
    for code, value, unit in good:
        response = await _post(outcomes, vital(code, value, unit))
        assert response.status_code == 201, (code, response.text)
    bad = [
        ("8867-4", 301, "/min", "from 0 to 300 /min"),
        ("59408-5", 100.5, "%", "from 0 to 100 %"),
        ("29463-7", 0, "kg", "above 0 to 650 kg"),
        ("29463-7", 650.1, "kg", "above 0 to 650 kg"),
        ("29463-7", 1434, "[lb_av]", "above 0 to 1433 [lb_av]"),
        ("8462-4", -1, "mm[Hg]", "from 0 to 300 mm[Hg]"),
    ]
    for code, value, unit, bounds in bad:
        message = await _refused(
            outcomes, vital(code, value, unit), "Observation.valueQuantity.value"
        )
        assert message.startswith(f"{code} (") and bounds in message, message
        assert "plausibility bound" in message
    assert "takes UCUM kg, [lb_av], g, not 'lb'" in await _refused(
        outcomes, vital("29463-7", 70, "lb"), "Observation.valueQuantity.code"
    )
    not_ucum = vital("8867-4", 70, "/min")
    not_ucum["valueQuantity"]["system"] = "http://example.org/units"
    await _refused(outcomes, not_ucum, "Observation.valueQuantity.system")
    integer = {k: v for k, v in vital("8867-4", 70, "/min").items() if k != "valueQuantity"}
    await _refused(outcomes, {**integer, "valueInteger": 70}, "Observation.valueInteger")


@BACKENDS
async def test_the_blood_pressure_panel_needs_both_components_each_checked(
    outcomes: httpx.AsyncClient,
):
    known_patient(outcomes)
    assert (await _post(outcomes, bp_panel(120, 80))).status_code == 201
    message = await _refused(
        outcomes, bp_panel(120, 301), "Observation.component[1].valueQuantity.value"
    )
    assert message.startswith("8462-4 (Diastolic blood pressure) must be from 0 to 300 mm[Hg]")
    wrong_unit = bp_panel()
    wrong_unit["component"][0]["valueQuantity"] = quantity(16, "kPa")
    await _refused(outcomes, wrong_unit, "Observation.component[0].valueQuantity.code")
    only_systolic = bp_panel()
    only_systolic["component"] = only_systolic["component"][:1]
    assert "needs a component 8462-4" in await _refused(
        outcomes, only_systolic, "Observation.component"
    )
    no_value = bp_panel()
    del no_value["component"][0]["valueQuantity"]
    await _refused(outcomes, no_value, "Observation.component[0].value[x]")
    with_value = {**bp_panel(), "valueQuantity": quantity(120, "mm[Hg]")}
    assert "carries its values in components" in await _refused(
        outcomes, with_value, "Observation.valueQuantity"
    )
    # Entered in error: neither the components nor their values are required any more.
    withdrawn = {**bp_panel(), "status": "entered-in-error"}
    del withdrawn["component"]
    assert (await _post(outcomes, withdrawn)).status_code == 201


async def test_checked_on_update_patch_and_in_transactions(outcomes: httpx.AsyncClient):
    known_patient(outcomes)
    created = (await _post(outcomes, score("44261-6", 12))).json()
    oid = created["id"]
    response = await outcomes.put(
        f"/Observation/{oid}", json={**score("44261-6", 28), "id": oid}, headers=FHIR_JSON
    )
    assert_outcome(response, 422, "invalid")
    patch = [{"op": "replace", "path": "/valueInteger", "value": 99}]
    response = await outcomes.patch(
        f"/Observation/{oid}", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert_outcome(response, 422, "invalid")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": score("70274-6", 5), "request": {"method": "POST", "url": "Observation"}},
            {"resource": score("70274-6", 22), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    issue = assert_outcome(await outcomes.post("", json=bundle, headers=FHIR_JSON), 422, "invalid")
    assert issue["expression"] == ["Bundle.entry[1].resource.valueInteger"]
    assert (await outcomes.get(f"/Observation/{oid}")).json()["valueInteger"] == 12


async def test_unknown_codes_are_stored_as_they_are(outcomes: httpx.AsyncClient):
    known_patient(outcomes)
    body = score("12345-6", 400)
    body["code"]["coding"].append({"system": "http://example.org/codes", "code": "x"})
    response = await _post(outcomes, body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["valueInteger"] == 400 and stored["code"] == body["code"]
    text = {**vital("8867-4", 70, "/min"), "code": {"text": "pulse, by hand"}}
    assert (await _post(outcomes, text)).status_code == 201
    # A known code under another system is another code.
    assert (await _post(outcomes, score("44261-6", 400, system="urn:other"))).status_code == 201


# ---- the measures file ----------------------------------------------------------------
def test_the_shipped_file_loads_with_bands_and_sources():
    table = outcome_measures()
    phq9 = table.measures["phq9-total"]
    assert [(b.min, b.max) for b in phq9.bands] == [(0, 4), (5, 9), (10, 14), (15, 19), (20, 27)]
    assert phq9.extra["remissionBelow"] == 5
    assert [b.min for b in table.measures["gad7-total"].bands] == [0, 5, 10, 15]
    assert table.measures["pcl5-total"].extra["clinicallyMeaningfulChange"] == 10
    assert table.measures["blood-pressure"].components == ("systolic", "diastolic")
    for measure in table.measures.values():
        assert measure.extra["source"]
        if measure.units:
            assert measure.extra["bound"] == "data-quality"
    assert {m.key for m in table.local_measures()} == {"madrs-total", "cadss-total", "suds", "voc"}


def _file() -> dict:
    return json.loads(MEASURES_FILE.read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("version"), "version must be a non-empty string"),
        (
            lambda d: d["measures"]["gad7-total"]["value"].update(max="21"),
            "measures.gad7-total.value.max must be a number",
        ),
        (
            lambda d: d["measures"]["voc"]["value"].update(min=8),
            "measures.voc.value: min 8 is above max 7",
        ),
        (
            lambda d: d["measures"]["phq9-total"]["bands"][1].update(min=6),
            "measures.phq9-total.bands[1] starts at 6, expected 5",
        ),
        (
            lambda d: d["measures"]["heart-rate"]["value"].update(units={}),
            "measures.heart-rate.value.units must map UCUM codes to their bounds",
        ),
        (
            lambda d: d["measures"]["blood-pressure"].update(components=["systolic", "pulse"]),
            "measures.blood-pressure.components[1]: 'pulse' is not a measure with a value",
        ),
        (
            lambda d: d["measures"]["suds"]["codes"][0].update(code="voc"),
            "measures.suds and measures.voc both claim voc",
        ),
        (
            lambda d: d["measures"]["suds"].pop("definition"),
            "measures.suds.definition must be a non-empty string",
        ),
        (
            lambda d: d["measures"]["spo2"]["value"].update(type="ratio"),
            "measures.spo2.value.type must be score, quantity or none",
        ),
    ],
)
def test_a_malformed_file_names_the_part_at_fault(change, message):
    data = _file()
    change(data)
    with pytest.raises(MeasureFileError) as raised:
        parse_measures(data)
    assert str(raised.value) == message


def test_a_malformed_file_stops_the_start_naming_the_file(tmp_path: Path, monkeypatch):
    bad = tmp_path / "measures.json"
    bad.write_text("{not json")
    with pytest.raises(MeasureFileError, match=r"^measures\.json: "):
        load_measures(bad)
    from services.outcomes import app as outcomes_app
    from services.outcomes.observations import measures

    monkeypatch.setattr(measures, "MEASURES_FILE", bad)
    outcome_measures.cache_clear()
    try:
        with pytest.raises(MeasureFileError, match=r"^measures\.json: "):
            outcomes_app.registry()
    finally:
        outcome_measures.cache_clear()


# ---- the local CodeSystem -------------------------------------------------------------
async def test_the_local_codes_are_published_read_only(new_database):
    app = build_app("outcomes", new_database("outcomes"), resync_on_start=False)
    async with serving(app) as client:
        found = (await client.get("/CodeSystem", params={"url": LOCAL})).json()
        (entry,) = found["entry"]
        code_system = entry["resource"]
        assert code_system["version"] == outcome_measures().version
        assert code_system["status"] == "active" and code_system["content"] == "complete"
        codes = [c["code"] for c in code_system["concept"]]
        assert codes == ["madrs-total", "cadss-total", "suds", "voc"]
        assert all(c["display"] and c["definition"] for c in code_system["concept"])
        read = await client.get(f"/CodeSystem/{code_system['id']}")
        assert read.status_code == 200
        changed = {**code_system, "title": "Changed"}
        put = await client.put(f"/CodeSystem/{code_system['id']}", json=changed)
        assert_outcome(put, 405, "not-supported")
        assert_outcome(await client.post("/CodeSystem", json=changed), 405, "not-supported")
        delete = await client.delete(f"/CodeSystem/{code_system['id']}")
        assert_outcome(delete, 405, "not-supported")
    app.state.fhir.database.dispose()
    # A second start publishes nothing new.
    again = build_app("outcomes", app.state.fhir.settings.database_url, resync_on_start=False)
    async with serving(again) as client:
        assert (await client.get("/CodeSystem", params={"url": LOCAL})).json()["total"] == 1
    again.state.fhir.database.dispose()
