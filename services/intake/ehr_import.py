"""`POST [base]/Patient/$import`: copy one patient from an allowed EHR into intake.

The fetch (`ehr_fetch.fetch_patient`) runs before the unit of work; the upsert below runs in
it, through Interactions, so the write rules, the practice checks, the audit trail and the
outbox apply as to any other write. Importing the same identifier again updates the patient
stored under it (the EHR's copy replaces ours) instead of adding another.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from services.intake.ehr_fetch import FetchedPatient, fetch_patient, identifier_token
from shared.fhir.errors import FHIRError, issue
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult
from shared.fhir.validation import validate_resource

log = logging.getLogger(__name__)


def _validated(fetched: FetchedPatient) -> dict[str, Any]:
    """The EHR's Patient if it is valid FHIR R4 here; else 422 naming the source."""
    try:
        validate_resource(fetched.resource, "Patient")
    except FHIRError as exc:
        # The fields at fault are named (FHIRPath and what is wrong), never their values.
        summary = issue(
            "error",
            "invalid",
            f"The Patient from the EHR at {fetched.source} is not valid FHIR R4 here; "
            "nothing was stored",
        )
        raise FHIRError(422, summary["diagnostics"], issues=[summary, *exc.issues]) from None
    return fetched.resource


def _upsert(call: OperationCall) -> OperationResult:
    """Create the patient, or update the one stored under the same identifier."""
    fetched: FetchedPatient = call.prepared
    resource = _validated(fetched)
    condition = urlencode({"identifier": identifier_token(fetched.system, fetched.value)})
    # Conditional update: 0 matches create, 1 updates, several are a 412 (ours to resolve).
    # Its search lock makes two concurrent imports of one identifier create one patient.
    result = call.interactions.conditional_update(
        call.session, "Patient", condition, resource, if_match=None
    )
    stored = result.stored
    assert stored is not None
    outcome = "created" if result.status == 201 else "updated"
    log.info("Imported Patient/%s from %s (%s)", stored.id, fetched.source, outcome)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "outcome", "valueCode": outcome},
            {"name": "patient", "resource": stored.resource},
        ],
    }
    return OperationResult(body, status=result.status)


def import_operation() -> Operation:
    """The `Patient/$import` operation of the intake service."""
    return Operation(
        name="import",
        levels=frozenset({"type"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=_upsert,
        prepare=fetch_patient,
        description=(
            "Fetch the one patient an allowed EHR (INTAKE_EHR_SOURCES) holds under an "
            "identifier and store it here: created, or updated if a patient with that "
            "identifier is already stored."
        ),
        # The upsert searches by identifier, then creates or updates.
        scope="system/Patient.cus",
        inputs=(
            OperationParam("source", "url", min=1, documentation="The EHR's FHIR base URL"),
            OperationParam(
                "identifier", "string", min=1, documentation="The patient's system|value"
            ),
        ),
        outputs=(
            OperationParam("outcome", "code", min=1, documentation="created or updated"),
            OperationParam("patient", "Patient", min=1, documentation="The stored Patient"),
        ),
    )
