"""The FHIR services."""
