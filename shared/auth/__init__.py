"""Security of the FHIR services: bearer tokens, SMART scopes, practice access, audit."""
