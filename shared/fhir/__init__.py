"""FHIR R4 plumbing shared by every service: resources, validation, storage, search, REST."""
