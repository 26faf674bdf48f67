"""Infrastructure and contracts shared by the FHIR services (never one service's domain)."""
