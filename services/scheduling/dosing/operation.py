"""`MedicationAdministration/{id}/$plasticity-window`: the window a completed dose opened."""

from __future__ import annotations

from services.scheduling.dosing.extensions import read_window
from services.scheduling.dosing.window import OFFSET_NAMES
from shared.fhir.errors import FHIRError
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult


def _window(call: OperationCall) -> OperationResult:
    """The stored window as Parameters; 404/410 as a read, 422 when there is none."""
    assert call.res_id is not None
    stored = call.interactions.read(call.session, "MedicationAdministration", call.res_id).stored
    resource = stored.resource if stored is not None else None
    values = read_window(resource or {}, call.interactions.settings.canonical_base)
    if not resource or resource.get("status") != "completed" or not values:
        reason = (
            "it is not completed"
            if resource and resource.get("status") != "completed"
            else "no dosing protocol applies to its medication and route"
        )
        raise FHIRError(
            422,
            f"MedicationAdministration/{call.res_id} has no plasticity window: {reason}",
            code="processing",
            expression=["MedicationAdministration.status"],
        )
    parameters = [{"name": name, "valueDateTime": values[name]} for name in OFFSET_NAMES]
    parameters.append({"name": "protocol", "valueString": values["protocol"]})
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})


def plasticity_window_operation() -> Operation:
    """The read-only instance operation on MedicationAdministration."""
    moment = "(UTC), from the end of the administration"
    return Operation(
        name="plasticity-window",
        levels=frozenset({"instance"}),
        handler=_window,
        description=(
            "The plasticity window a completed dose opened: computed from its dosing protocol "
            "and the patient's CarePlan tailoring in force when it was recorded."
        ),
        scope="system/MedicationAdministration.r",
        outputs=(
            OperationParam("windowStart", "dateTime", min=1, documentation=f"Opens {moment}"),
            OperationParam("optimalStart", "dateTime", min=1, documentation=f"Best from {moment}"),
            OperationParam("optimalEnd", "dateTime", min=1, documentation=f"Best until {moment}"),
            OperationParam("windowEnd", "dateTime", min=1, documentation=f"Closes {moment}"),
            OperationParam("protocol", "string", min=1, documentation="The protocol as id|version"),
        ),
    )
