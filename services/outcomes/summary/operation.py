"""`GET [base]/Patient/{id}/$outcomes`: the patient's measures and timeline, as Parameters."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby
from typing import Any

from services.outcomes.observations.measures import outcome_measures
from services.outcomes.summary.change import summarise
from services.outcomes.summary.parameters import event_parameters, measure_parameter
from services.outcomes.summary.timeline import patient_timeline
from shared.auth.needs import check_letters
from shared.auth.principal import current_principal
from shared.fhir.operations import (
    Operation,
    OperationCall,
    OperationParam,
    OperationResult,
    Renderer,
)

# Scores are Observations; the timeline also hands out doses and EMDR sessions.
SCOPE = "system/Observation.rs"
_ALSO_READ = ("Patient", "MedicationAdministration", "Appointment")


def outcomes_operation(
    canonical_base: str, renderers: Mapping[str, Renderer] | None = None
) -> Operation:
    """The instance-level `$outcomes` on the Patient replica (`renderers`: its charts)."""

    def handler(call: OperationCall) -> OperationResult:
        for res_type in _ALSO_READ:
            check_letters(current_principal.get(), res_type, "r")
        patient_id = call.res_id or ""
        # 404 for an unknown patient or one of another practice, 410 for a deleted one.
        call.interactions.read(call.session, "Patient", patient_id)
        return OperationResult(patient_outcomes(call.session, patient_id, canonical_base))

    return Operation(
        name="outcomes",
        levels=frozenset({"instance"}),
        handler=handler,
        description=(
            "The patient's outcome measures (baseline before the first dose, latest, change, "
            "severity band, response, remission) and timeline of doses, EMDR sessions and "
            "scores."
        ),
        scope=SCOPE,
        outputs=(OperationParam("return", "Parameters", min=1, documentation="The summary"),),
        renderers=renderers or {},
    )


def patient_outcomes(session: Any, patient_id: str, canonical_base: str) -> dict[str, Any]:
    """The Parameters of one patient's outcomes, from the timeline tables."""
    measures = outcome_measures().measures
    timeline = patient_timeline(session, patient_id)
    # In the measures file's order (PHQ-9 first), each measure's scores in time order.
    rank = {key: index for index, key in enumerate(measures)}
    known = [s for s in timeline.scores if s.measure in measures]
    by_measure = sorted(known, key=lambda s: (rank[s.measure], s.effective, s.obs_id))
    parameters: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}}
    ]
    for key, scores in groupby(by_measure, key=lambda s: s.measure):
        summary = summarise(measures[key], list(scores), timeline.first_dose)
        parameters.append(measure_parameter(summary, canonical_base))
    parameters.extend(event_parameters(timeline, measures, canonical_base))
    return {"resourceType": "Parameters", "parameter": parameters}
