"""An access as a FHIR R4 AuditEvent, after the IHE Basic Audit Log Patterns (BALP)."""

from __future__ import annotations

import base64
from typing import Any

from shared.auth.audit_record import Access

DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
CLIENT_ID = "urn:kemdr:client-id"
SUBJECT = "urn:kemdr:subject"
SERVICE = "urn:kemdr:service"

_PROFILES = {"C": "Create", "R": "Read", "U": "Update", "D": "Delete", "E": "Query"}


def outcome(status: int) -> str:
    """0 success, 4 minor failure (refused, not found, invalid), 8 serious failure (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _agents(access: Access, service: str) -> list[dict[str, Any]]:
    network = {"address": access.source, "type": "2"} if access.source else None
    client: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, "110153", "Source Role ID")]},
        "requestor": access.subject is None,
    }
    if access.client_id is not None:
        client["who"] = {"identifier": {"system": CLIENT_ID, "value": access.client_id}}
        client["name"] = access.client_id
    elif access.method:
        client["who"] = {"display": "unauthenticated caller"}
    else:
        # No request: the service's own work (an event reaction), acting for itself.
        client["who"] = {"identifier": {"system": SERVICE, "value": service}}
        client["requestor"] = True
    if network:
        client["network"] = network
    agents = [client]
    if access.subject is not None:
        who: dict[str, Any] = {"identifier": {"system": SUBJECT, "value": access.subject}}
        if access.fhir_user:
            who["reference"] = access.fhir_user
        agents.append(
            {
                "type": {"coding": [_coding(SECURITY_ROLE, "humanuser", "human user")]},
                "who": who,
                "requestor": True,
            }
        )
    agents.append(
        {
            "type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
            "who": {"identifier": {"system": SERVICE, "value": service}},
            "requestor": False,
        }
    )
    return agents


def _entities(access: Access) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": patient},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        }
        for patient in access.patients
    ]
    for reference in access.entities:
        if reference.split("/_history/")[0] in access.patients:
            continue  # the Patient read is the patient entity already
        entities.append(
            {
                "what": {"reference": reference},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if access.subtype.startswith("search") or access.query:
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "description": f"{access.method} {access.path}",
                "query": base64.b64encode(access.query.encode()).decode(),
            }
        )
    if access.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": access.request_id}},
                "type": _coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
            }
        )
    return entities


def audit_event(access: Access, service: str) -> dict[str, Any]:
    """The AuditEvent of one access (without id and meta.versionId: the store adds them)."""
    action = access.action
    return {
        "resourceType": "AuditEvent",
        "meta": {"profile": [BALP_PROFILE + _PROFILES[action]]},
        "type": _coding(DCM, "110110", "Patient Record"),
        "subtype": [_coding(INTERACTION, access.subtype, access.subtype)],
        "action": action,
        "recorded": access.recorded,
        "outcome": outcome(access.status),
        "outcomeDesc": f"HTTP {access.status}" if access.method else "completed",
        "agent": _agents(access, service),
        "source": {
            "site": service,
            "observer": {"identifier": {"system": SERVICE, "value": service}},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": _entities(access),
    }
