"""The programme's own measure codes (MADRS, CADSS, SUDS, VOC), published as one CodeSystem."""

from __future__ import annotations

from typing import Any

from services.outcomes.observations.measures import LOCAL, MeasureTable, outcome_measures


def measure_system(canonical_base: str, table: MeasureTable | None = None) -> str:
    """The CodeSystem's canonical url under the programme's canonical base (settings)."""
    table = table or outcome_measures()
    return f"{canonical_base.rstrip('/')}/CodeSystem/{table.local['id']}"


def measure_code_system(canonical_base: str, table: MeasureTable | None = None) -> dict[str, Any]:
    """The CodeSystem of the file's local codes; its version is the measures file's, so a
    changed code or display needs a new file version (the publication seam refuses it else)."""
    table = table or outcome_measures()
    concepts = [
        {"code": code, "display": measure.display, "definition": measure.definition}
        for measure in table.local_measures()
        for system, code in measure.codes
        if system == LOCAL
    ]
    return {
        "resourceType": "CodeSystem",
        "url": measure_system(canonical_base, table),
        "version": table.version,
        "name": table.local["name"],
        "title": table.local["title"],
        "status": "active",
        "experimental": False,
        "description": table.local["description"],
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
