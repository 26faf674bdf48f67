"""The code systems and codes the demo cohort writes (as an EHR's integration would hold them)."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOCATION_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
DEFAULT_BASE = "https://fhir.example.org/kemdr"

PTSD = {"system": SNOMED, "code": "47505003", "display": "Posttraumatic stress disorder"}
PSYCHIATRIST = {"system": SNOMED, "code": "80584001", "display": "Psychiatrist"}
PSYCHOTHERAPIST = {"system": SNOMED, "code": "224588003", "display": "Psychotherapist"}

# The screening Questionnaire's public linkIds (intake's README): contraindications by kind.
ABSOLUTE = (
    "aneurysmal-vascular-disease",
    "arteriovenous-malformation",
    "intracerebral-haemorrhage-history",
    "ketamine-hypersensitivity",
    "pregnancy",
    "psychosis-or-schizophrenia",
)
RELATIVE = (
    "bipolar-disorder",
    "substance-use-disorder-recent",
    "uncontrolled-hypertension",
    "arrhythmia-or-cerebrovascular-instability",
    "traumatic-brain-injury",
    "breastfeeding",
    "maoi-use",
    "benzodiazepine-high-dose",
    "family-history-psychosis",
)
# PHQ-9 item answers (LOINC answer list LL358-3) by score.
PHQ9_ANSWERS = (
    ("LA6568-5", "Not at all"),
    ("LA6569-3", "Several days"),
    ("LA6570-1", "More than half the days"),
    ("LA6571-9", "Nearly every day"),
)
PCL5_ANSWERS = (
    ("not-at-all", "Not at all"),
    ("a-little-bit", "A little bit"),
    ("moderately", "Moderately"),
    ("quite-a-bit", "Quite a bit"),
    ("extremely", "Extremely"),
)

# Score measures outcomes knows: key -> (system, code, display); None system = the local one.
MEASURES: dict[str, tuple[str | None, str, str]] = {
    "phq9-total": (LOINC, "44261-6", "PHQ-9 total score"),
    "gad7-total": (LOINC, "70274-6", "GAD-7 total score"),
    "pcl5-total": (LOINC, "101698-9", "PCL-5 total score"),
    "madrs-total": (None, "madrs-total", "MADRS total score"),
    "suds": (None, "suds", "Subjective Units of Distress"),
    "voc": (None, "voc", "Validity of Cognition"),
}


def measure_code(base: str, key: str) -> dict[str, Any]:
    """The CodeableConcept of a score measure (local codes under the canonical base)."""
    system, code, display = MEASURES[key]
    coding = {"system": system or f"{base}/CodeSystem/outcome-measure", "code": code}
    return {"coding": [{**coding, "display": display}], "text": display}


def session_type(base: str, code: str) -> dict[str, Any]:
    """A session-type concept (preparation, dosing, emdr, integration)."""
    return {"coding": [{"system": f"{base}/CodeSystem/session-type", "code": code}]}
