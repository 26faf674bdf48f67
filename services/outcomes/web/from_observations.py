"""A patient's summary from their score Observations, in the shape of `$outcomes`, for a
service that does not serve that operation (baseline: the earliest score; latest: the newest)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.outcomes.web.views import RESPONSE_MEASURES, Instruments


def _score(observation: dict[str, Any]) -> Decimal | None:
    if "valueInteger" in observation:
        return Decimal(observation["valueInteger"])
    quantity = observation.get("valueQuantity") or {}
    return Decimal(str(quantity["value"])) if "value" in quantity else None


def _when(observation: dict[str, Any]) -> str | None:
    return observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get(
        "start"
    )


def outcomes_from_observations(bundle: dict[str, Any], instruments: Instruments) -> dict[str, Any]:
    """A Parameters with one `measure` per score instrument found in the search Bundle."""
    series: dict[str, list[tuple[str, Decimal, dict[str, Any]]]] = {}
    for entry in bundle.get("entry", []):
        observation = entry.get("resource") or {}
        if observation.get("status") not in ("final", "amended", "corrected"):
            continue
        codings = (observation.get("code") or {}).get("coding", [])
        coding = next((c for c in codings if instruments.measure(c)), None)
        measure = instruments.measure(coding)
        value, when = _score(observation), _when(observation)
        if measure is None or measure.score is None or value is None or when is None:
            continue
        series.setdefault(measure.key, []).append((when, value, coding or {}))
    parameter = []
    for key, points in series.items():
        points.sort(key=lambda p: p[0])
        (first_time, baseline, coding), rest = points[0], points[1:]
        parts: list[dict[str, Any]] = [
            {"name": "instrument", "valueCoding": coding},
            {"name": "baseline", "valueDecimal": baseline},
            {"name": "baselineTime", "valueDateTime": first_time},
        ]
        measure = instruments.measure(coding)
        shown = baseline
        if rest:
            latest_time, latest, _ = rest[-1]
            change = latest - baseline
            shown = latest
            parts += [
                {"name": "latest", "valueDecimal": latest},
                {"name": "latestTime", "valueDateTime": latest_time},
                {"name": "change", "valueDecimal": change},
            ]
            if baseline:
                parts.append({"name": "percentChange", "valueDecimal": 100 * change / baseline})
                if key in RESPONSE_MEASURES:
                    parts.append({"name": "response", "valueBoolean": change <= -baseline / 2})
        bands = measure.bands if measure else ()
        band = next((b for b in bands if b.min <= shown <= b.max), None)
        if band is not None:
            parts.append({"name": "severityBand", "valueCode": band.code})
        parameter.append({"name": "measure", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameter}
