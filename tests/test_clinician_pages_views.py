"""What the clinician pages make of the operations' Parameters (the shapes of `$outcomes` and
`$programme-report`), rendered through the real templates: no server needed."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams

from services.outcomes.web.filters import ProgrammeFilters
from services.outcomes.web.routes import _templates
from services.outcomes.web.views import (
    Instruments,
    adherence,
    course_rows,
    programme_rows,
    response_headline,
    score_rows,
)

LOINC = "http://loinc.org"
LOCAL = "https://fhir.example.org/kemdr/CodeSystem/outcome-measure"
instruments = Instruments("https://fhir.example.org/kemdr")


def measure(code: str, system: str = LOINC, **parts: Any) -> dict[str, Any]:
    kinds = {bool: "valueBoolean", str: "valueCode", int: "valueDecimal", float: "valueDecimal"}
    found = [{"name": "instrument", "valueCoding": {"system": system, "code": code}}]
    for name, value in parts.items():
        kind = "valueDateTime" if name.endswith("Time") else kinds[type(value)]
        found.append({"name": name, kind: value})
    return {"name": "measure", "part": found}


def event(kind: str, time: str, **parts: Any) -> dict[str, Any]:
    found = [{"name": "type", "valueCode": kind}, {"name": "time", "valueDateTime": time}]
    for name, value in parts.items():
        key = "valueDecimal" if isinstance(value, int | float) else "valueDateTime"
        found.append({"name": name, key: value})
    return {"name": "event", "part": found}


OUTCOMES = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        measure(
            "101698-9",
            baseline=52,
            baselineTime="2026-01-05T09:00:00Z",
            latest=38,
            latestTime="2026-03-02T09:00:00Z",
            change=-14,
            percentChange=-26.92,
            clinicallyMeaningfulChange=True,
        ),
        measure(
            "madrs-total",
            LOCAL,
            baseline=30,
            baselineTime="2026-01-05T09:00:00Z",
            latest=6,
            latestTime="2026-03-02T09:00:00Z",
            change=-24,
            percentChange=-80,
            severityBand="remission",
            response=True,
            remission=True,
        ),
        measure("44261-6", baseline=0, baselineTime="2026-01-05T09:00:00Z", severityBand="minimal"),
        event(
            "dose",
            "2026-01-06T10:00:00Z",
            optimalStart="2026-01-07T10:00:00Z",
            optimalEnd="2026-01-09T10:00:00Z",
        ),
        event("emdr-session", "2026-01-07T12:30:00Z", offsetHours=26.5),
    ],
}


def test_the_patient_table_reads_every_part_of_outcomes():
    rows = {row.key: row for row in score_rows(OUTCOMES, instruments)}
    pcl5, madrs, phq9 = rows["pcl5-total"], rows["madrs-total"], rows["phq9-total"]
    assert (pcl5.instrument, pcl5.baseline, pcl5.latest) == ("PCL-5 total score", "52", "38")
    assert (pcl5.change, pcl5.percent_change, pcl5.meaningful) == ("\u221214", "\u221227 %", "Yes")
    assert pcl5.band == "—" and pcl5.response == "—"  # PCL-5 has no bands nor response
    assert (madrs.band, madrs.response, madrs.remission) == ("Remission", "Yes", "Yes")
    assert madrs.latest_day == "2 Mar 2026"
    # A baseline of 0 and no later score: no change, no percentage.
    assert (phq9.latest, phq9.change, phq9.percent_change, phq9.band) == ("—", "—", "—", "Minimal")
    # The page leads with MADRS here: PHQ-9 has no change to show.
    assert response_headline(list(rows.values())) == madrs


def test_the_course_lists_doses_with_their_window_and_sessions_with_their_offset():
    dose, session = course_rows(OUTCOMES)
    assert (dose.kind, dose.day) == ("Dose", "6 Jan 2026 10:00")
    assert dose.detail == "optimal window 7 Jan 2026 10:00 to 9 Jan 2026 10:00"
    assert (session.kind, session.detail) == ("EMDR session", "27 h after the dose")


def test_the_patient_page_escapes_what_it_shows():
    rows = score_rows(OUTCOMES, instruments)
    html = _templates.get_template("patient.html").render(
        session=None,
        patient_id="p1",
        name="<script>alert(1)</script>",
        rows=rows,
        headline=response_headline(rows),
        course=course_rows(OUTCOMES),
        chart=True,
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'src="/app/charts/patients/p1?format=svg"' in html
    assert "\u221280 %" in html and "remission" in html


REPORT = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "measure",
            "part": [
                {"name": "instrument", "valueCoding": {"system": LOINC, "code": "44261-6"}},
                {"name": "n", "valueInteger": 40},
                {"name": "baselineMean", "valueDecimal": 17.425},
                {"name": "latestMean", "valueDecimal": 8.05},
                {"name": "meanChange", "valueDecimal": -9.375},
                {"name": "hedgesG", "valueDecimal": -1.234},
                {"name": "hedgesGLow", "valueDecimal": -1.65},
                {"name": "hedgesGHigh", "valueDecimal": -0.82},
                {"name": "responseRate", "valueDecimal": 0.55},
                {"name": "responseRateLow", "valueDecimal": 0.4},
                {"name": "responseRateHigh", "valueDecimal": 0.69},
                {"name": "remissionRate", "valueDecimal": 0.3},
            ],
        },
        {
            "name": "measure",
            "part": [
                {"name": "instrument", "valueCoding": {"system": LOINC, "code": "101698-9"}},
                {"name": "n", "valueInteger": 2},
                {"name": "note", "valueString": "g needs at least 3 patients"},
            ],
        },
        {"name": "windowAdherence", "valueDecimal": 0.8125},
        {"name": "sessions", "valueInteger": 160},
    ],
}


def test_the_programme_table_shows_means_effect_sizes_and_rates_with_intervals():
    phq9, pcl5 = programme_rows(REPORT, instruments)
    assert (phq9.instrument, phq9.n, phq9.baseline_mean, phq9.latest_mean) == (
        "PHQ-9 total score",
        "40",
        "17.4",
        "8.1",
    )
    assert phq9.mean_change == "\u22129.4"
    assert phq9.hedges_g == "\u22121.23 (\u22121.65 to \u22120.82)"
    assert phq9.response_rate == "55 % (40 % to 69 %)" and phq9.remission_rate == "30 %"
    assert (pcl5.hedges_g, pcl5.note) == ("—", "g needs at least 3 patients")


def test_the_programme_filters_become_the_operation_inputs_and_malformed_ones_are_dropped():
    query = QueryParams(
        "since=2026-01-01&until=2026-06-30&protocol=ketamine-iv&route=47625008"
        "&practice=Organization/practice-a&name=x"
    )
    filters = ProgrammeFilters.read(query)
    assert filters.operation_inputs() == [
        ("period", "ge2026-01-01"),
        ("period", "le2026-06-30"),
        ("protocol", "ketamine-iv"),
        ("route", "47625008"),
        ("practice", "Organization/practice-a"),
    ]
    assert "since=2026-01-01" in filters.page_query() and "name" not in filters.page_query()
    odd = ProgrammeFilters.read(QueryParams("since=yesterday&protocol=a%20b&route=<x>"))
    assert odd.operation_inputs() == [] and not odd.any


def test_the_programme_page_shows_adherence_notes_and_keeps_the_filters_on_its_charts():
    report = {
        **REPORT,
        "parameter": [
            *REPORT["parameter"],
            {"name": "patients", "valueInteger": 42},
            {"name": "windowAdherenceLow", "valueDecimal": 0.7452},
            {"name": "windowAdherenceHigh", "valueDecimal": 0.8655},
        ],
    }
    assert adherence(report) == "81 % (75 % to 87 %)"
    filters = ProgrammeFilters.read(QueryParams("protocol=ketamine-iv"))
    html = _templates.get_template("programme.html").render(
        session=None,
        rows=programme_rows(report, instruments),
        report=True,
        adherence=adherence(report),
        sessions_counted=160,
        patients_counted=42,
        notes=["No remission threshold is defined for the PCL-5 total score"],
        chart=True,
        evidence_chart=True,
        patients=[],
        filters=filters,
    )
    assert "42 patients counted" in html and "81 % (75 % to 87 %)" in html
    assert 'src="/app/charts/programme?format=svg&amp;protocol=ketamine-iv"' in html
    assert 'value="ketamine-iv"' in html and "No remission threshold" in html
