"""Parameters as the outcome operations answer them (the issue's contract), for the charts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
LOCAL = "http://kemdr.example/fhir/CodeSystem/outcome-measure"
PHQ9 = {"system": LOINC, "code": "44261-6", "display": "PHQ-9 total score"}
PCL5 = {"system": LOINC, "code": "101698-9", "display": "PCL-5 total score"}
GAD7 = {"system": LOINC, "code": "70274-6", "display": "GAD-7 total score"}
MADRS = {"system": LOCAL, "code": "madrs-total", "display": "MADRS total score"}
SUDS = {"system": LOCAL, "code": "suds", "display": "SUDS rating"}
START = datetime(2026, 3, 2, 9)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _part(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, datetime):
        return {"name": name, "valueDateTime": _iso(value)}
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, dict) and "system" in value:
        return {"name": name, "valueCoding": value}
    if isinstance(value, dict):
        return {"name": name, "valueReference": value}
    if isinstance(value, int) and name in ("n", "sessions", "sudsN", "pcl5N"):
        return {"name": name, "valueInteger": value}
    if isinstance(value, int | float):
        return {"name": name, "valueDecimal": value}
    if name in ("type", "severityBand"):
        return {"name": name, "valueCode": value}
    return {"name": name, "valueString": value}


def parameter(name: str, **parts: Any) -> dict[str, Any]:
    """One Parameters.parameter with its parts (values typed as the contract says)."""
    return {"name": name, "part": [_part(k, v) for k, v in parts.items() if v is not None]}


def patient_outcomes(*, scores: bool = True, doses: int = 4) -> dict[str, Any]:
    """`$outcomes` of a patient on a course: PHQ-9, MADRS, PCL-5, SUDS; doses with windows."""
    events: list[tuple[datetime, dict[str, Any]]] = []

    def score(moment: datetime, instrument: dict[str, str], value: float) -> None:
        ref = {"reference": f"Observation/o{len(events)}"}
        item = parameter(
            "event", type="score", time=moment, reference=ref, instrument=instrument, value=value
        )
        events.append((moment, item))

    if scores:
        for day, value in [(-14, 19), (-1, 18), (8, 14), (15, 11), (22, 9), (43, 6)]:
            score(START + timedelta(days=day), PHQ9, value)
        for day, value in [(-1, 34), (22, 18), (43, 11)]:
            score(START + timedelta(days=day), MADRS, value)
        for day, value in [(-14, 52), (-1, 49), (29, 33), (43, 30)]:
            score(START + timedelta(days=day), PCL5, value)
    for k in range(doses):
        dose_time = START + timedelta(days=3.5 * k)
        dose = {"reference": f"MedicationAdministration/d{k}"}
        events.append(
            (
                dose_time,
                parameter(
                    "event",
                    type="dose",
                    time=dose_time,
                    reference=dose,
                    windowStart=dose_time + timedelta(hours=2),
                    optimalStart=dose_time + timedelta(hours=24),
                    optimalEnd=dose_time + timedelta(hours=72),
                    windowEnd=dose_time + timedelta(days=7),
                ),
            )
        )
        offset = (26, 30, 5, 70)[k % 4]
        session = dose_time + timedelta(hours=offset)
        events.append(
            (
                session,
                parameter(
                    "event",
                    type="emdr-session",
                    time=session,
                    reference={"reference": f"Appointment/a{k}"},
                    offsetHours=offset,
                    dose=dose,
                ),
            )
        )
        if scores:
            score(session, SUDS, 7 - k)
            score(session + timedelta(minutes=80), SUDS, 2)
    events.sort(key=lambda item: item[0])
    measures = []
    if scores:
        measures = [
            parameter(
                "measure",
                instrument=PHQ9,
                baseline=18,
                baselineTime=START - timedelta(days=1),
                latest=6,
                latestTime=START + timedelta(days=43),
                change=-12,
                percentChange=-66.7,
                severityBand="mild",
                response=True,
                remission=False,
            ),
            parameter(
                "measure",
                instrument=MADRS,
                baseline=34,
                latest=11,
                change=-23,
                percentChange=-67.6,
                severityBand="mild",
                response=True,
                remission=False,
            ),
            parameter(
                "measure",
                instrument=PCL5,
                baseline=49,
                latest=30,
                change=-19,
                percentChange=-38.8,
                clinicallyMeaningfulChange=True,
            ),
        ]
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
            *measures,
            *(item for _, item in events),
        ],
    }


def programme_report(*, empty: bool = False) -> dict[str, Any]:
    """`$programme-report` with PHQ-9, MADRS, PCL-5, and a GAD-7 too small for g."""
    if empty:
        return {"resourceType": "Parameters", "parameter": []}
    return {
        "resourceType": "Parameters",
        "parameter": [
            parameter(
                "measure",
                instrument=PHQ9,
                n=24,
                baselineMean=17.8,
                latestMean=8.1,
                meanChange=-9.7,
                hedgesG=-1.42,
                hedgesGLow=-1.98,
                hedgesGHigh=-0.86,
                responseRate=0.5417,
                responseRateLow=0.3507,
                responseRateHigh=0.7211,
                remissionRate=0.25,
            ),
            parameter(
                "measure",
                instrument=MADRS,
                n=18,
                baselineMean=31.2,
                latestMean=14.0,
                meanChange=-17.2,
                hedgesG=-1.1,
                hedgesGLow=-1.6,
                hedgesGHigh=-0.6,
                responseRate=0.9,
                responseRateLow=0.69,
                responseRateHigh=0.97,
                remissionRate=0.22,
            ),
            parameter(
                "measure",
                instrument=PCL5,
                n=22,
                baselineMean=51.0,
                latestMean=36.5,
                meanChange=-14.5,
                hedgesG=-0.9,
                hedgesGLow=-1.3,
                hedgesGHigh=-0.5,
            ),
            parameter(
                "measure",
                instrument=GAD7,
                n=2,
                baselineMean=12,
                latestMean=9,
                meanChange=-3,
                note="g needs at least 3 patients",
            ),
            {"name": "windowAdherence", "valueDecimal": 0.72},
            {"name": "sessions", "valueInteger": 64},
        ],
    }


def window_evidence(*, sessions: bool = True, best: str | None = None) -> dict[str, Any]:
    """`$window-evidence` over the five default bins; the comparison names `best` or cannot tell."""
    bins = [
        ("0-2 h", 0, 2, 4, (2.5, 0.8, 4.2, 4), (-3, -9, 3, 3)),
        ("2-24 h", 2, 24, 12, (3.1, 2.2, 4.0, 12), (-5.5, -8, -3, 11)),
        ("24-72 h", 24, 72, 25, (4.2, 3.6, 4.8, 25), (-8.1, -10.2, -6.0, 22)),
        ("72 h-7 d", 72, 168, 9, (3.0, 2.0, 4.0, 9), (-4, -7, -1, 8)),
        ("over 7 d", 168, None, 0, None, None),
    ]
    found = []
    for label, low, high, count, suds, pcl5 in bins:
        suds = suds if sessions else None
        pcl5 = pcl5 if sessions else None
        found.append(
            parameter(
                "bin",
                label=label,
                fromHours=low,
                toHours=high,
                sessions=count if sessions else 0,
                sudsReduction=suds and suds[0],
                sudsReductionLow=suds and suds[1],
                sudsReductionHigh=suds and suds[2],
                sudsN=suds and suds[3],
                pcl5Change=pcl5 and pcl5[0],
                pcl5ChangeLow=pcl5 and pcl5[1],
                pcl5ChangeHigh=pcl5 and pcl5[2],
                pcl5N=pcl5 and pcl5[3],
            )
        )
    comparison = parameter(
        "comparison",
        method="linear mixed model, random intercept per patient",
        best=best,
        conclusion=f"Sessions {best} after the dose reduced SUDS most."
        if best
        else "The data cannot tell the bins apart yet.",
    )
    if not best:
        comparison["part"].append({"name": "moreSessionsNeeded", "valueInteger": 40})
    return {"resourceType": "Parameters", "parameter": [*found, comparison]}
