"""`GET [base]/$research-export`: the programme's scores as de-identified CSV, streamed.

Only patients with an active research Consent; no names, identifiers, resource ids or dates:
a keyed-hash study id, and times as days from the patient's first dose.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from services.outcomes.research.dataset import ScoreRow, consented_patients, score_rows
from services.outcomes.research.study_id import study_id
from services.outcomes.settings import OutcomesSettings
from services.outcomes.summary.change import number
from shared.auth.access import restriction
from shared.auth.audit_record import current_access
from shared.auth.needs import Need, needs
from shared.db.engine import Database
from shared.fhir.dates import utcnow
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult
from shared.fhir.rest.context import FHIRContext

SCOPE = "system/Observation.rs"
COLUMNS = ("study_id", "measure", "days_from_first_dose", "value", "session_offset_hours")
CSV = "text/csv"
# Patients per query: one short read each, so no transaction stays open while a slow client
# reads, and no more than one batch of rows is ever in memory.
BATCH = 100
_ACCEPTED = {CSV, "text/*", "*/*"}
_SECONDS_PER_DAY = 86_400


def research_export_definition() -> Operation:
    """`$research-export` as the CapabilityStatement and its OperationDefinition state it.

    No methods: the declared operations' routes answer FHIR JSON, and this one streams CSV,
    so its route is research_export_router's (the Binary it returns is sent as its content).
    """
    return Operation(
        name="research-export",
        levels=frozenset({"system"}),
        handler=_served_by_its_own_route,
        description=(
            "Scores of the patients with an active research Consent, de-identified, as CSV "
            f"({', '.join(COLUMNS)}): study ids are keyed hashes, times are days from the "
            "first dose."
        ),
        methods=frozenset(),
        scope=SCOPE,
        outputs=(OperationParam("return", "Binary", min=1, documentation="text/csv"),),
    )


def _served_by_its_own_route(_call: OperationCall) -> OperationResult:
    raise NotImplementedError("$research-export is served by research_export_router")


def research_export_router(context: FHIRContext, settings: OutcomesSettings) -> APIRouter:
    """The route of `$research-export` under the FHIR base."""
    router = APIRouter(prefix=settings.base_path)

    @router.get(
        "/$research-export",
        tags=["system"],
        summary="$research-export: consented patients' scores as de-identified CSV",
        dependencies=needs(Need(scope=SCOPE)),
        response_class=StreamingResponse,
        responses={200: {"content": {CSV: {}}, "description": ", ".join(COLUMNS)}},
    )
    async def research_export(request: Request) -> Response:
        _check_request(request)
        if settings.research_key is None:
            raise FHIRError(
                422,
                "The research export is not configured: set OUTCOMES_RESEARCH_KEY",
                code="not-supported",
            )
        key = settings.research_key.get_secret_value().encode()
        practices = restriction()
        patients = await context.read(consented_patients, utcnow(), practices)
        access = current_access.get()
        if access is not None:
            # The audit record names whose data left, though the file does not.
            for patient_id in patients:
                access.touched(None, f"Patient/{patient_id}")
        return StreamingResponse(
            _csv(context.database, patients, key),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="research-export.csv"'},
        )

    return router


def _check_request(request: Request) -> None:
    """CSV only (406 otherwise), and no query parameter but `_format=csv`."""
    for name, value in request.query_params.multi_items():
        if name != "_format":
            raise bad_request(f"$research-export has no parameter '{name}'", [name])
        if value.lower() not in ("csv", CSV):
            raise FHIRError(406, f"_format={value} is not offered; use csv", code="not-supported")
    accept = request.headers.get("accept")
    if accept and not request.query_params.get("_format"):
        types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not types & _ACCEPTED:
            raise FHIRError(406, f"Cannot produce '{accept}': only {CSV}", code="not-supported")


def _csv(database: Database, patients: list[str], key: bytes) -> Iterator[str]:
    """The header, then the rows of each batch of patients, one read per batch."""
    yield _line(COLUMNS)
    # In study-id order: the order of patient ids (sequential MRNs, counters) would let a
    # reader map study ids back to patients by rank.
    studies = {patient: study_id(key, patient) for patient in patients}
    ordered = sorted(patients, key=studies.__getitem__)
    for start in range(0, len(ordered), BATCH):
        with database.read() as session:
            rows = list(score_rows(session, ordered[start : start + BATCH]))
        rows.sort(key=lambda row: studies[row.patient_id])  # stable: each patient's in time
        yield "".join(_line(_deidentified(row, key)) for row in rows)


def _deidentified(row: ScoreRow, key: bytes) -> tuple[str, ...]:
    return (
        study_id(key, row.patient_id),
        row.measure,
        _days(row.effective, row.first_dose),
        str(number(row.value)),
        "" if row.session_offset_hours is None else str(number(round(row.session_offset_hours, 2))),
    )


def _days(moment: datetime, first_dose: datetime | None) -> str:
    """Days from the first dose to two decimals (negative before it; empty with no dose)."""
    if first_dose is None:
        return ""
    days = round((moment - first_dose).total_seconds() / _SECONDS_PER_DAY, 2)
    return f"{days + 0.0:.2f}"  # + 0.0: never "-0.00"


def _line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()
