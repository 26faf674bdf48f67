"""FHIR R4 search parameters of the Administration and Scheduling module types."""

from __future__ import annotations

from shared.fhir.registry import SearchParam

PRACTITIONER_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A practitioner identifier"),
    SearchParam(
        "name",
        "string",
        ("name",),
        description="Any part of the name: family, given, prefix, suffix or text",
    ),
    SearchParam("family", "string", ("name.family",), description="A family name"),
    SearchParam("given", "string", ("name.given",), description="A given name"),
    SearchParam("active", "token", ("active",), description="Whether the record is in use"),
)

PRACTITIONER_ROLE_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A role identifier"),
    SearchParam(
        "practitioner",
        "reference",
        ("practitioner",),
        ("Practitioner",),
        description="The practitioner in this role",
    ),
    SearchParam(
        "organization",
        "reference",
        ("organization",),
        ("Organization",),
        description="The organization (practice) where the role is held",
    ),
    SearchParam("role", "token", ("code",), description="The role: psychiatrist, nurse..."),
    SearchParam("specialty", "token", ("specialty",), description="The practitioner's specialty"),
    SearchParam(
        "location",
        "reference",
        ("location",),
        ("Location",),
        description="A location where the role is performed",
    ),
    SearchParam("active", "token", ("active",), description="Whether the role is in use"),
)

LOCATION_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A location identifier"),
    SearchParam("name", "string", ("name", "alias"), description="A name or alias"),
    SearchParam("status", "token", ("status",), description="active | suspended | inactive"),
    SearchParam("type", "token", ("type",), description="The kind of location"),
    SearchParam(
        "organization",
        "reference",
        ("managingOrganization",),
        ("Organization",),
        description="The organization responsible for the location",
    ),
    SearchParam(
        "partof",
        "reference",
        ("partOf",),
        ("Location",),
        description="The location this one is part of",
    ),
)

SCHEDULE_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A schedule identifier"),
    SearchParam(
        "actor",
        "reference",
        ("actor",),
        description="Whose availability it is: practitioner, role, location...",
    ),
    SearchParam("active", "token", ("active",), description="Whether the schedule is in use"),
    SearchParam("date", "date", ("planningHorizon",), description="The planning horizon"),
    SearchParam("service-type", "token", ("serviceType",), description="The service type"),
    SearchParam("specialty", "token", ("specialty",), description="The specialty"),
)

SLOT_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="A slot identifier"),
    SearchParam(
        "schedule",
        "reference",
        ("schedule",),
        ("Schedule",),
        description="The schedule the slot belongs to",
    ),
    SearchParam("status", "token", ("status",), description="busy | free | busy-unavailable ..."),
    SearchParam("start", "date", ("start",), description="When the slot starts"),
    SearchParam("service-type", "token", ("serviceType",), description="The service type"),
    SearchParam("specialty", "token", ("specialty",), description="The specialty"),
    SearchParam(
        "appointment-type", "token", ("appointmentType",), description="The appointment type"
    ),
)

ENCOUNTER_PARAMS = (
    SearchParam("identifier", "token", ("identifier",), description="An encounter identifier"),
    SearchParam(
        "patient",
        "reference",
        ("subject",),
        ("Patient",),
        description="The patient present at the encounter",
    ),
    SearchParam(
        "subject", "reference", ("subject",), ("Patient", "Group"), description="The subject"
    ),
    SearchParam("status", "token", ("status",), description="planned | arrived | ..."),
    SearchParam(
        "appointment",
        "reference",
        ("appointment",),
        ("Appointment",),
        description="The appointment that scheduled it",
    ),
    SearchParam("date", "date", ("period",), description="When the encounter took place"),
    SearchParam("class", "token", ("class",), description="ambulatory, virtual..."),
    SearchParam("type", "token", ("type",), description="The specific kind of encounter"),
    SearchParam(
        "practitioner",
        "reference",
        ("participant.individual",),
        ("Practitioner",),
        description="A practitioner taking part",
    ),
    SearchParam(
        "participant",
        "reference",
        ("participant.individual",),
        description="Anyone taking part, other than the patient",
    ),
    SearchParam(
        "location",
        "reference",
        ("location.location",),
        ("Location",),
        description="Where the encounter took place",
    ),
    SearchParam(
        "episode-of-care",
        "reference",
        ("episodeOfCare",),
        ("EpisodeOfCare",),
        description="The episode of care it belongs to",
    ),
    SearchParam(
        "service-provider",
        "reference",
        ("serviceProvider",),
        ("Organization",),
        description="The organization responsible",
    ),
)

ADMINISTRATION_PARAMS: dict[str, tuple[SearchParam, ...]] = {
    "Practitioner": PRACTITIONER_PARAMS,
    "PractitionerRole": PRACTITIONER_ROLE_PARAMS,
    "Location": LOCATION_PARAMS,
    "Schedule": SCHEDULE_PARAMS,
    "Slot": SLOT_PARAMS,
    "Encounter": ENCOUNTER_PARAMS,
}

# The code systems their `code`-typed status elements are bound to (FHIR R4).
ADMINISTRATION_SYSTEMS: dict[tuple[str, str], str] = {
    ("Location", "status"): "http://hl7.org/fhir/location-status",
    ("Slot", "status"): "http://hl7.org/fhir/slotstatus",
    ("Encounter", "status"): "http://hl7.org/fhir/encounter-status",
}
