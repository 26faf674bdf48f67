"""The FHIR REST API: routes built from the registry, module-level handlers per interaction."""

from shared.fhir.rest.context import FHIRContext
from shared.fhir.rest.routes import build_router

__all__ = ["FHIRContext", "build_router"]
