"""What each resource version contributes to the timeline tables (one function per type)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import outcome_measures
from shared.fhir.dates import DateFormatError, date_range
from shared.fhir.references import parse_reference

# Observation states whose value stands (preliminary and registered ones are not results yet).
COUNTED_STATES = frozenset({"final", "amended", "corrected"})
CONSENT_SCOPES = "http://terminology.hl7.org/CodeSystem/consentscope"


def moment(value: Any) -> datetime | None:
    """A FHIR dateTime as naive UTC (its first instant); None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return date_range(value)[0]
    except DateFormatError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def _id_of(reference: Any, res_type: str) -> str | None:
    """The id a Reference names for `res_type` (versioned or absolute ones too, as the search
    index reads them)."""
    value = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str):
        return None
    found_type, found_id = parse_reference(value)
    return found_id if found_type == res_type else None


def _effective(resource: dict[str, Any], name: str = "effective") -> datetime | None:
    period = resource.get(f"{name}Period")
    if isinstance(period, dict):
        return moment(period.get("start"))
    return moment(resource.get(f"{name}DateTime", resource.get(f"{name}Instant")))


def _value(observation: dict[str, Any]) -> float | None:
    if "valueInteger" in observation:
        return _number(observation["valueInteger"])
    quantity = observation.get("valueQuantity")
    return _number(quantity.get("value")) if isinstance(quantity, dict) else None


class TimelineRows:
    """Row functions for one canonical base (the local code and extension urls hang off it)."""

    def __init__(self, canonical_base: str) -> None:
        base = canonical_base.rstrip("/")
        table = outcome_measures()
        self.scores = {
            coding: measure.key
            for coding, measure in table.by_coding(measure_system(base, table)).items()
            if measure.value_type == "score"
        }
        self.session_type = f"{base}/CodeSystem/session-type"
        self.opened_by = f"{base}/StructureDefinition/opened-by-dose"
        self.window = f"{base}/StructureDefinition/plasticity-window"

    def score(self, obs_id: str, observation: dict[str, Any]) -> list[dict[str, Any]]:
        """A score Observation that stands, with a value and a time: one row."""
        if observation.get("status") not in COUNTED_STATES:
            return []
        measure = self._measure(observation.get("code"))
        patient = _id_of(observation.get("subject"), "Patient")
        effective = _effective(observation)
        value = _value(observation)
        if measure is None or patient is None or effective is None or value is None:
            return []
        return [
            {
                "patient_id": patient,
                "measure": measure,
                "effective": effective,
                "value": value,
                "encounter_id": _id_of(observation.get("encounter"), "Encounter"),
                "derived": bool(observation.get("derivedFrom")),
            }
        ]

    def _measure(self, concept: Any) -> str | None:
        for coding in (concept or {}).get("coding") or [] if isinstance(concept, dict) else []:
            if isinstance(coding, dict):
                key = self.scores.get((coding.get("system"), coding.get("code")))
                if key is not None:
                    return key
        return None

    def dose(self, dose_id: str, administration: dict[str, Any]) -> list[dict[str, Any]]:
        """A completed administration: when, by which route, and the window it opened."""
        if administration.get("status") != "completed":
            return []
        patient = _id_of(administration.get("subject"), "Patient")
        start = _effective(administration)
        if patient is None or start is None:
            return []
        period = administration.get("effectivePeriod")
        ended = moment(period.get("end")) if isinstance(period, dict) else None
        window = self._window(administration)
        protocol = window.get("protocol")
        return [
            {
                "patient_id": patient,
                "start": start,
                "ended": ended or start,
                "route": _first_code((administration.get("dosage") or {}).get("route")),
                "protocol": protocol.split("|")[0] if isinstance(protocol, str) else None,
                "window_start": moment(window.get("windowStart")),
                "optimal_start": moment(window.get("optimalStart")),
                "optimal_end": moment(window.get("optimalEnd")),
                "window_end": moment(window.get("windowEnd")),
            }
        ]

    def _window(self, administration: dict[str, Any]) -> dict[str, Any]:
        for extension in administration.get("extension") or []:
            if isinstance(extension, dict) and extension.get("url") == self.window:
                return {
                    sub.get("url"): sub.get("valueDateTime", sub.get("valueString"))
                    for sub in extension.get("extension") or []
                    if isinstance(sub, dict)
                }
        return {}

    def session(self, appointment_id: str, appointment: dict[str, Any]) -> list[dict[str, Any]]:
        """An EMDR Appointment with its patient: when, its state and the dose that opened it."""
        if not self._is_emdr(appointment):
            return []
        patient = next(
            (
                found
                for participant in appointment.get("participant") or []
                if isinstance(participant, dict)
                and (found := _id_of(participant.get("actor"), "Patient")) is not None
            ),
            None,
        )
        if patient is None:
            return []
        dose, offset = self._opened_by(appointment)
        return [
            {
                "patient_id": patient,
                "start": moment(appointment.get("start")),
                "end": moment(appointment.get("end")),
                "status": str(appointment.get("status") or "unknown")[:32],
                "dose_id": dose,
                "offset_hours": offset,
            }
        ]

    def _is_emdr(self, appointment: dict[str, Any]) -> bool:
        return any(
            isinstance(coding, dict)
            and coding.get("system") == self.session_type
            and coding.get("code") == "emdr"
            for concept in appointment.get("serviceType") or []
            if isinstance(concept, dict)
            for coding in concept.get("coding") or []
        )

    def _opened_by(self, appointment: dict[str, Any]) -> tuple[str | None, float | None]:
        for extension in appointment.get("extension") or []:
            if not isinstance(extension, dict) or extension.get("url") != self.opened_by:
                continue
            if "valueReference" in extension:
                return _id_of(extension["valueReference"], "MedicationAdministration"), None
            dose, offset = None, None
            for sub in extension.get("extension") or []:
                if not isinstance(sub, dict):
                    continue
                if sub.get("url") == "dose":
                    dose = _id_of(sub.get("valueReference"), "MedicationAdministration")
                elif sub.get("url") == "offset-hours":
                    offset = _number(sub.get("valueDecimal"))
            return dose, offset
        return None, None

    def encounter(self, encounter_id: str, encounter: dict[str, Any]) -> list[dict[str, Any]]:
        """An Encounter of a patient, and the session (Appointment) it happened in."""
        patient = _id_of(encounter.get("subject"), "Patient")
        if patient is None:
            return []
        appointments = encounter.get("appointment") or []
        period = encounter.get("period") if isinstance(encounter.get("period"), dict) else {}
        return [
            {
                "patient_id": patient,
                "appointment_id": _id_of(appointments[0], "Appointment") if appointments else None,
                "status": str(encounter.get("status") or "unknown")[:32],
                "start": moment(period.get("start")),
                "end": moment(period.get("end")),
            }
        ]

    def consent(self, consent_id: str, consent: dict[str, Any]) -> list[dict[str, Any]]:
        """A patient's Consent: whether it is for research, its state and its period."""
        patient = _id_of(consent.get("patient"), "Patient")
        if patient is None:
            return []
        scope = consent.get("scope") if isinstance(consent.get("scope"), dict) else {}
        research = any(
            isinstance(coding, dict)
            and coding.get("system") == CONSENT_SCOPES
            and coding.get("code") == "research"
            for coding in scope.get("coding") or []
        )
        provision = consent.get("provision") if isinstance(consent.get("provision"), dict) else {}
        period = provision.get("period") if isinstance(provision.get("period"), dict) else {}
        # A research Consent whose base provision denies is the patient's refusal, not a
        # consent (as intake reads treatment consents). Nested exceptions are not read.
        permits = provision.get("type", "permit") != "deny"
        return [
            {
                "patient_id": patient,
                "research": research and permits,
                "status": str(consent.get("status") or "unknown")[:32],
                "period_start": moment(period.get("start")),
                "period_end": _last_moment(period.get("end")),
            }
        ]


def _last_moment(value: Any) -> datetime | None:
    """The last instant a FHIR date covers (a period ending on a day includes that day)."""
    if not isinstance(value, str):
        return None
    try:
        return date_range(value)[1]
    except DateFormatError:
        return None


def _first_code(concept: Any) -> str | None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return coding["code"][:64]
    return None
