"""A search within every query bound that still costs the database seconds, for time-out tests.

Each of `clauses` `name:contains` parameters lists 100 patterns, and only the last name of each
Patient matches: every candidate's names are scanned against every pattern, for every clause.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import FHIR_JSON

MARK = "zzend"
PATTERNS = ",".join([f"zq{i}" for i in range(99)] + [MARK])


def many_names(n: int) -> dict[str, Any]:
    """A Patient with a hundred names; only the last one matches the costly search."""
    names = [{"family": f"Fmly{n}x{k}", "given": [f"Gvn{k}", f"Othr{k}"]} for k in range(100)]
    return {"resourceType": "Patient", "name": [*names, {"family": MARK.title()}]}


def costly_params(clauses: int = 50) -> list[tuple[str, str]]:
    """The costly search's parameters (50 clauses: seconds for 40 Patients on SQLite)."""
    return [("name:contains", PATTERNS)] * clauses


async def seed(client: httpx.AsyncClient, patients: int = 40) -> None:
    """Create the Patients that make the costly search slow."""
    for n in range(patients):
        response = await client.post("/Patient", json=many_names(n), headers=FHIR_JSON)
        assert response.status_code == 201, response.text


def seed_sync(client: httpx.Client, patients: int) -> None:
    """`seed` for a blocking client (a real service process)."""
    for n in range(patients):
        response = client.post("/Patient", json=many_names(n), headers=FHIR_JSON)
        assert response.status_code == 201, response.text
