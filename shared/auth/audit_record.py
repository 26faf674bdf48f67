"""One access to patient data as the audit trail keeps it, from the request until its AuditEvent."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared.auth.principal import Principal
from shared.auth.scopes import WRITE_INTERACTIONS
from shared.fhir.lexical import ID, ID_PATTERN, TYPE_NAME, is_type_name

# restful-interaction code -> BALP action (C/R/U/D/E).
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search-type": "E",
    "search-system": "E",
    "history-instance": "R",
    "history-type": "E",
    "history-system": "E",
    "transaction": "E",
    "operation": "E",
}
# A request id we echo into the record: anything else is replaced (it could be injected text).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# What may enter a record as a reference: whatever else a client put in a URL (a NUL byte,
# say) would be indexed with the AuditEvent, and one unstorable record must not exist.
_REFERENCE = re.compile(rf"{TYPE_NAME}/{ID}(/_history/[0-9]{{1,12}})?")
_PATIENT = re.compile(rf"Patient/{ID}")


@dataclass
class Access:
    """What one request did, filled in as it runs (the context variable holds it)."""

    method: str
    path: str
    query: str
    source: str | None
    request_id: str
    subtype: str
    res_type: str | None = None
    res_id: str | None = None
    status: int = 0
    recorded: str = ""
    client_id: str | None = None
    subject: str | None = None
    fhir_user: str | None = None
    # References read while serving it (`Type/id/_history/v`) and the patients they concern.
    entities: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    # Writes it committed that were audited in their own transaction.
    audited_writes: int = 0

    @property
    def action(self) -> str:
        return ACTIONS.get(self.subtype, "E")

    def caller(self, principal: Principal | None) -> None:
        """Take the caller from the verified token (None: unauthenticated or refused)."""
        if principal is not None:
            self.client_id = principal.client_id
            self.subject = principal.subject
            self.fhir_user = principal.fhir_user
            self.source = principal.source or self.source

    def touched(self, reference: str | None, patient: str | None) -> None:
        """Note a resource read (`Type/id[/_history/v]`) and the patient it concerns;
        anything not of those forms is left out."""
        if reference and _REFERENCE.fullmatch(reference) and reference not in self.entities:
            self.entities.append(reference)
        if patient and _PATIENT.fullmatch(patient) and patient not in self.patients:
            self.patients.append(patient)

    def to_json(self) -> str:
        """The record as the spool keeps it."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Access:
        """A spooled record; fields a later version added or dropped are tolerated."""
        data = orjson.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


current_access: ContextVar[Access | None] = ContextVar("current_access", default=None)


def request_id(header: bytes | None, fallback: str) -> str:
    """The client's X-Request-ID when it is a plain token, else ours."""
    if header:
        text = header.decode("latin-1")
        if _REQUEST_ID.fullmatch(text):
            return text
    return fallback


def classify(method: str, segments: list[str]) -> tuple[str, str | None, str | None] | None:
    """The restful-interaction code, type and id of a path below the base; None: no access
    to patient data (metadata, or reading the audit trail itself)."""
    if segments in ([], [""]):
        return ("transaction", None, None) if method == "POST" else None
    head = segments[0]
    if head == "metadata":
        return None
    if head.startswith("$"):
        return "operation", None, None
    if head == "_history":
        return "history-system", None, None
    rest = segments[1:]
    if not is_type_name(head):
        return "operation", None, None  # no such type: recorded, naming nothing
    if head == "AuditEvent" and (method == "GET" or rest == ["_search"]):
        return None  # reading the trail is not itself recorded (it would grow on every look)
    if not rest:
        return (
            ("search-type" if method == "GET" else WRITE_INTERACTIONS.get(method, "operation")),
            head,
            None,
        )
    if rest[0] == "_search":
        return "search-type", head, None
    if rest[0] == "_history":
        return "history-type", head, None
    if rest[0].startswith("$"):
        return "operation", head, None
    res_id = rest[0] if ID_PATTERN.fullmatch(rest[0]) else None
    if len(rest) == 1:
        return (
            ("read" if method == "GET" else WRITE_INTERACTIONS.get(method, "operation")),
            head,
            res_id,
        )
    if rest[1].startswith("$"):
        return "operation", head, res_id
    return ("vread" if len(rest) > 2 else "history-instance"), head, res_id


def query_patients(res_type: str | None, query: str) -> list[str]:
    """The patients a search names: `patient=`, `subject=Patient/..`, or a Patient `_id`."""
    found: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=False):
        base = name.split(":", 1)[0]
        for item in value.split(","):
            if base == "patient" or (base == "_id" and res_type == "Patient"):
                ref = item if item.startswith("Patient/") else f"Patient/{item}"
            elif base == "subject" and item.startswith("Patient/"):
                ref = item
            else:
                continue
            if ref not in found:
                found.append(ref)
    return found


def patient_of(res_type: str, res_id: str, resource: dict[str, Any] | None) -> str | None:
    """The patient a resource concerns: a Patient itself, else its subject or patient."""
    if res_type == "Patient":
        return f"Patient/{res_id}"
    if not resource:
        return None
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference") if isinstance(resource, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref
    for participant in resource.get("participant") or ():
        ref = (participant.get("actor") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref
    return None
