"""The FHIR R4 search parameters of the resource types the programme uses."""

from __future__ import annotations

from shared.fhir.operations import Operation
from shared.fhir.params_administration import ADMINISTRATION_PARAMS, ADMINISTRATION_SYSTEMS
from shared.fhir.registry import ResourceDef, SearchParam
from shared.fhir.rules import Enricher, WriteRule

PATIENT_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A patient identifier"),
    SearchParam(
        "name",
        "string",
        ("name",),
        description="Any part of the name: family, given, prefix, suffix or text",
    ),
    SearchParam("family", "string", ("name.family",), description="A family name"),
    SearchParam("given", "string", ("name.given",), description="A given name"),
    SearchParam("birthdate", "date", ("birthDate",), description="The date of birth"),
    SearchParam("gender", "token", ("gender",), description="Administrative gender"),
    SearchParam(
        "general-practitioner",
        "reference",
        ("generalPractitioner",),
        ("Organization", "Practitioner", "PractitionerRole"),
        description="The patient's nominated primary care provider",
    ),
    SearchParam(
        "organization",
        "reference",
        ("managingOrganization",),
        ("Organization",),
        description="The organization that is the custodian of the patient record",
    ),
)

APPOINTMENT_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An appointment identifier"),
    SearchParam(
        "patient",
        "reference",
        ("participant.actor",),
        ("Patient",),
        description="A participating patient",
    ),
    SearchParam(
        "actor",
        "reference",
        ("participant.actor",),
        description="Any participant: patient, practitioner, location, device...",
    ),
    SearchParam(
        "practitioner",
        "reference",
        ("participant.actor",),
        ("Practitioner",),
        description="A participating practitioner",
    ),
    SearchParam("date", "date", ("start",), description="The appointment's start"),
    SearchParam("status", "token", ("status",), description="The appointment status"),
    SearchParam("service-type", "token", ("serviceType",), description="The service type"),
    SearchParam(
        "appointment-type", "token", ("appointmentType",), description="The appointment type"
    ),
)

MEDICATION_ADMINISTRATION_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An identifier"),
    SearchParam(
        "patient",
        "reference",
        ("subject",),
        ("Patient",),
        description="The patient who received the medication",
    ),
    SearchParam(
        "subject",
        "reference",
        ("subject",),
        ("Patient", "Group"),
        description="The individual or group given the medication",
    ),
    SearchParam(
        "effective-time",
        "date",
        ("effectiveDateTime", "effectivePeriod"),
        description="When the administration happened",
    ),
    SearchParam("status", "token", ("status",), description="The administration status"),
    SearchParam(
        "code",
        "token",
        ("medicationCodeableConcept",),
        description="The medication code (RxNorm)",
    ),
    SearchParam(
        "performer",
        "reference",
        ("performer.actor",),
        description="Who administered the medication",
    ),
)

OBSERVATION_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An observation identifier"),
    SearchParam(
        "patient",
        "reference",
        ("subject",),
        ("Patient",),
        description="The patient the observation is about",
    ),
    SearchParam(
        "subject",
        "reference",
        ("subject",),
        description="The subject the observation is about",
    ),
    SearchParam("code", "token", ("code",), description="The observation code (LOINC)"),
    SearchParam("category", "token", ("category",), description="The observation category"),
    SearchParam(
        "date",
        "date",
        ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        description="When the observation applies",
    ),
    SearchParam("value-quantity", "quantity", ("valueQuantity",), description="A quantity value"),
    SearchParam("status", "token", ("status",), description="The observation status"),
    SearchParam(
        "has-member",
        "reference",
        ("hasMember",),
        ("Observation", "QuestionnaireResponse", "MolecularSequence"),
        description="A member of this panel",
    ),
    SearchParam(
        "derived-from",
        "reference",
        ("derivedFrom",),
        description="What the observation was derived from",
    ),
    SearchParam(
        "performer",
        "reference",
        ("performer",),
        description="Who is responsible for the observation",
    ),
)

CARE_PLAN_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A care plan identifier"),
    SearchParam(
        "patient", "reference", ("subject",), ("Patient",), description="Who the plan is for"
    ),
    SearchParam(
        "subject",
        "reference",
        ("subject",),
        ("Patient", "Group"),
        description="Who the plan is for: a patient or a group",
    ),
    SearchParam("status", "token", ("status",), description="draft | active | on-hold ..."),
    SearchParam("intent", "token", ("intent",), description="proposal | plan | order | option"),
    SearchParam("category", "token", ("category",), description="The kind of plan"),
    SearchParam(
        "activity-reference",
        "reference",
        ("activity.reference",),
        (
            "Appointment",
            "CommunicationRequest",
            "DeviceRequest",
            "MedicationRequest",
            "NutritionOrder",
            "RequestGroup",
            "ServiceRequest",
            "Task",
            "VisionPrescription",
        ),
        description="An activity's detail, as a request resource",
    ),
    SearchParam(
        "instantiates-canonical",
        "reference",
        ("instantiatesCanonical",),
        description="The protocol or definition the plan follows, as `url` or `url|version`",
    ),
    SearchParam("date", "date", ("period",), description="The period the plan covers"),
    SearchParam(
        "encounter",
        "reference",
        ("encounter",),
        ("Encounter",),
        description="The encounter the plan was created in",
    ),
    SearchParam(
        "performer",
        "reference",
        ("activity.detail.performer",),
        description="Who is to carry out an activity",
    ),
)

# The code systems of `code`-typed elements, implied by the element (FHIR R4 bindings), so
# that `gender=http://hl7.org/fhir/administrative-gender|female` matches as well as `female`.
IMPLICIT_SYSTEMS: dict[tuple[str, str], str] = {
    ("Patient", "gender"): "http://hl7.org/fhir/administrative-gender",
    ("Appointment", "status"): "http://hl7.org/fhir/appointmentstatus",
    ("MedicationAdministration", "status"): (
        "http://terminology.hl7.org/CodeSystem/medication-admin-status"
    ),
    ("Observation", "status"): "http://hl7.org/fhir/observation-status",
    ("ServiceRequest", "status"): "http://hl7.org/fhir/request-status",
    ("DetectedIssue", "status"): "http://hl7.org/fhir/observation-status",
    ("Consent", "status"): "http://hl7.org/fhir/consent-state-codes",
    ("EpisodeOfCare", "status"): "http://hl7.org/fhir/episode-of-care-status",
    ("QuestionnaireResponse", "status"): "http://hl7.org/fhir/questionnaire-answers-status",
    ("Questionnaire", "status"): "http://hl7.org/fhir/publication-status",
    ("CodeSystem", "status"): "http://hl7.org/fhir/publication-status",
    ("CodeSystem", "content"): "http://hl7.org/fhir/codesystem-content-mode",
    **ADMINISTRATION_SYSTEMS,
    ("CarePlan", "status"): "http://hl7.org/fhir/request-status",
    ("CarePlan", "intent"): "http://hl7.org/fhir/request-intent",
}

QUESTIONNAIRE_PARAMS = (
    SearchParam("url", "uri", ("url",), description="The canonical URL"),
    SearchParam("version", "token", ("version",), description="The business version"),
    SearchParam("name", "string", ("name",), description="Computer-friendly name"),
    SearchParam("title", "string", ("title",), description="Human-friendly name"),
    SearchParam("status", "token", ("status",), description="draft | active | retired | unknown"),
    SearchParam("identifier", "token", ("identifier",), description="A business identifier"),
)
CODE_SYSTEM_PARAMS = (
    SearchParam("url", "uri", ("url",), description="The canonical URL"),
    SearchParam("system", "uri", ("url",), description="The system of its codes (its url)"),
    SearchParam("version", "token", ("version",), description="The business version"),
    SearchParam("name", "string", ("name",), description="Computer-friendly name"),
    SearchParam("title", "string", ("title",), description="Human-friendly name"),
    SearchParam("status", "token", ("status",), description="draft | active | retired | unknown"),
    SearchParam("identifier", "token", ("identifier",), description="A business identifier"),
    SearchParam("code", "token", ("concept.code",), description="A code it defines"),
    SearchParam(
        "content-mode",
        "token",
        ("content",),
        description="not-present | example | fragment | complete | supplement",
    ),
)
QUESTIONNAIRE_RESPONSE_PARAMS = (
    SearchParam(
        "questionnaire",
        "reference",
        ("questionnaire",),
        description="The questionnaire answered, as a canonical: `url` or `url|version`",
    ),
    SearchParam("subject", "reference", ("subject",), description="Who or what it is about"),
    SearchParam(
        "patient", "reference", ("subject",), targets=("Patient",), description="The patient"
    ),
    SearchParam("authored", "date", ("authored",), description="When it was answered"),
    SearchParam(
        "status",
        "token",
        ("status",),
        description="in-progress | completed | amended | entered-in-error | stopped",
    ),
    SearchParam("author", "reference", ("author",), description="Who recorded the answers"),
    SearchParam("identifier", "token", ("identifier",), description="A business identifier"),
)

ORGANIZATION_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An organization identifier"),
    SearchParam("name", "string", ("name", "alias"), description="A name or alias"),
    SearchParam("active", "token", ("active",), description="Whether the record is in use"),
    SearchParam(
        "partof",
        "reference",
        ("partOf",),
        ("Organization",),
        description="The organization this one is part of",
    ),
)

SERVICE_REQUEST_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A request identifier"),
    SearchParam("subject", "reference", ("subject",), description="Who the request is for"),
    SearchParam(
        "patient", "reference", ("subject",), ("Patient",), description="The patient referred"
    ),
    SearchParam("status", "token", ("status",), description="The request status"),
    SearchParam("intent", "token", ("intent",), description="proposal | plan | order ..."),
    SearchParam("code", "token", ("code",), description="What is requested"),
    SearchParam("category", "token", ("category",), description="The request category"),
    SearchParam("authored", "date", ("authoredOn",), description="When it was signed"),
    SearchParam("requester", "reference", ("requester",), description="Who asks (the referrer)"),
    SearchParam("performer", "reference", ("performer",), description="Who is asked to act"),
)

DETECTED_ISSUE_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An issue identifier"),
    SearchParam(
        "patient", "reference", ("patient",), ("Patient",), description="The patient concerned"
    ),
    SearchParam("code", "token", ("code",), description="The issue type"),
    SearchParam("implicated", "reference", ("implicated",), description="What the issue is about"),
    SearchParam("identified", "date", ("identifiedDateTime",), description="When it was found"),
    SearchParam("author", "reference", ("author",), description="Who found it"),
    # Not an R4 standard parameter, but the status tells open findings from withdrawn ones.
    SearchParam("status", "token", ("status",), description="The issue status"),
)

CONSENT_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A consent identifier"),
    SearchParam(
        "patient", "reference", ("patient",), ("Patient",), description="Who the consent is about"
    ),
    SearchParam("status", "token", ("status",), description="draft | proposed | active ..."),
    SearchParam("scope", "token", ("scope",), description="treatment | research | ..."),
    SearchParam("category", "token", ("category",), description="The consent category"),
    SearchParam("date", "date", ("dateTime",), description="When it was agreed"),
    SearchParam(
        "organization",
        "reference",
        ("organization",),
        ("Organization",),
        description="The custodian of the consent",
    ),
)

EPISODE_OF_CARE_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An episode identifier"),
    SearchParam(
        "patient", "reference", ("patient",), ("Patient",), description="The patient in care"
    ),
    SearchParam("status", "token", ("status",), description="planned | waitlist | active ..."),
    SearchParam("type", "token", ("type",), description="The kind of episode"),
    SearchParam("date", "date", ("period",), description="The episode's period"),
    SearchParam(
        "organization",
        "reference",
        ("managingOrganization",),
        ("Organization",),
        description="The organization in charge",
    ),
    SearchParam(
        "incoming-referral",
        "reference",
        ("referralRequest",),
        ("ServiceRequest",),
        description="The referral that started it",
    ),
    SearchParam("care-manager", "reference", ("careManager",), description="The care manager"),
)

# `agent` and `source` are tokens on the identifiers of agent.who and source.observer (R4 has
# references): the callers are OAuth clients and the observer a service, neither of them a
# stored resource, so their identifiers are what one searches by.
AUDIT_EVENT_PARAMS = (
    SearchParam("date", "date", ("recorded",), description="When the event was recorded"),
    SearchParam(
        "agent",
        "token",
        ("agent.who.identifier",),
        description="Who took part: a client id (urn:kemdr:client-id) or token subject",
    ),
    SearchParam("entity", "reference", ("entity.what",), description="A resource touched"),
    SearchParam(
        "patient",
        "reference",
        ("entity.what", "agent.who"),
        ("Patient",),
        description="The patient whose record was accessed",
    ),
    SearchParam("outcome", "token", ("outcome",), description="0, 4, 8 or 12"),
    SearchParam("type", "token", ("type",), description="The event type (DCM 110110)"),
    SearchParam("subtype", "token", ("subtype",), description="The REST interaction"),
    SearchParam("action", "token", ("action",), description="C, R, U, D or E"),
    SearchParam(
        "source",
        "token",
        ("source.observer.identifier",),
        description="The service that recorded the event (urn:kemdr:service)",
    ),
)

STANDARD_PARAMS: dict[str, tuple[SearchParam, ...]] = {
    "AuditEvent": AUDIT_EVENT_PARAMS,
    "Questionnaire": QUESTIONNAIRE_PARAMS,
    "CodeSystem": CODE_SYSTEM_PARAMS,
    "QuestionnaireResponse": QUESTIONNAIRE_RESPONSE_PARAMS,
    "Patient": PATIENT_PARAMS,
    "Appointment": APPOINTMENT_PARAMS,
    "MedicationAdministration": MEDICATION_ADMINISTRATION_PARAMS,
    "Observation": OBSERVATION_PARAMS,
    "Organization": ORGANIZATION_PARAMS,
    "ServiceRequest": SERVICE_REQUEST_PARAMS,
    "DetectedIssue": DETECTED_ISSUE_PARAMS,
    "Consent": CONSENT_PARAMS,
    "EpisodeOfCare": EPISODE_OF_CARE_PARAMS,
    **ADMINISTRATION_PARAMS,
    "CarePlan": CARE_PLAN_PARAMS,
}


# The FHIR R4 Patient CompartmentDefinition: per resource type, the search parameters whose
# Patient references put a resource in that patient's compartment (practice-level access
# reads them from the reference index). Patient itself belongs to a practice through
# PRACTICE_PARAMS instead. Schedule (`actor`) is left out on purpose: here it is a
# practitioner's calendar, not patient data. Any other type is not patient data.
PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    "Account": ("subject",),
    "AdverseEvent": ("subject",),
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "Appointment": ("actor",),
    "AppointmentResponse": ("actor",),
    "AuditEvent": ("patient",),
    "Basic": ("patient", "author"),
    "BodyStructure": ("patient",),
    "CarePlan": ("patient", "performer"),
    "CareTeam": ("patient", "participant"),
    "ChargeItem": ("subject",),
    "Claim": ("patient", "payee"),
    "ClaimResponse": ("patient",),
    "ClinicalImpression": ("subject",),
    "Communication": ("subject", "sender", "recipient"),
    "CommunicationRequest": ("subject", "sender", "recipient", "requester"),
    "Composition": ("subject", "author", "attester"),
    "Condition": ("patient", "asserter"),
    "Consent": ("patient",),
    "Coverage": ("policy-holder", "subscriber", "beneficiary", "payor"),
    "CoverageEligibilityRequest": ("patient",),
    "CoverageEligibilityResponse": ("patient",),
    "DetectedIssue": ("patient",),
    "DeviceRequest": ("subject", "performer"),
    "DeviceUseStatement": ("subject",),
    "DiagnosticReport": ("subject",),
    "DocumentManifest": ("subject", "author", "recipient"),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("patient",),
    "EnrollmentRequest": ("subject",),
    "EpisodeOfCare": ("patient",),
    "ExplanationOfBenefit": ("patient", "payee"),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("patient",),
    "Goal": ("patient",),
    "Group": ("member",),
    "ImagingStudy": ("patient",),
    "Immunization": ("patient",),
    "ImmunizationEvaluation": ("patient",),
    "ImmunizationRecommendation": ("patient",),
    "Invoice": ("subject", "patient", "recipient"),
    "List": ("subject", "source"),
    "MeasureReport": ("patient",),
    "Media": ("subject",),
    "MedicationAdministration": ("patient", "performer", "subject"),
    "MedicationDispense": ("subject", "patient", "receiver"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "MolecularSequence": ("patient",),
    "NutritionOrder": ("patient",),
    "Observation": ("subject", "performer"),
    "Person": ("patient",),
    "Procedure": ("patient", "performer"),
    "Provenance": ("patient",),
    "QuestionnaireResponse": ("subject", "author"),
    "RelatedPerson": ("patient",),
    "RequestGroup": ("subject", "participant"),
    "ResearchSubject": ("individual",),
    "RiskAssessment": ("subject",),
    "ServiceRequest": ("subject", "performer"),
    "Specimen": ("subject",),
    "SupplyDelivery": ("patient",),
    "SupplyRequest": ("subject",),
    "VisionPrescription": ("patient",),
}
# A Patient belongs to the practice (Organization) that manages it or is its nominated GP.
PRACTICE_PARAMS = ("organization", "general-practitioner")


def _check_access_params(resource_type: str, params: tuple[SearchParam, ...]) -> None:
    """Access control reads these params from the reference index: a type must declare each
    one as an indexed reference parameter, or its resources would silently be unreachable."""
    needed = PRACTICE_PARAMS if resource_type == "Patient" else ()
    needed = PATIENT_COMPARTMENT.get(resource_type, needed)
    declared = {p.name for p in params if p.type == "reference"}
    missing = [name for name in needed if name not in declared]
    if missing:
        raise ValueError(f"{resource_type} must declare reference search params {missing}")


def resource(
    resource_type: str,
    owner: str,
    *,
    rules: tuple[WriteRule, ...] = (),
    enrichers: tuple[Enricher, ...] = (),
    operations: tuple[Operation, ...] = (),
    api_writable: bool = True,
) -> ResourceDef:
    """Declare a resource type with its standard search parameters and owning service."""
    _check_access_params(resource_type, STANDARD_PARAMS[resource_type])
    return ResourceDef(
        type=resource_type,
        params=STANDARD_PARAMS[resource_type],
        owner=owner,
        rules=rules,
        enrichers=enrichers,
        operations=operations,
        api_writable=api_writable,
    )


def audit_events(service: str) -> ResourceDef:
    """AuditEvent as every service serves it: its own records, readable, never API-written."""
    return resource("AuditEvent", owner=service, api_writable=False)
