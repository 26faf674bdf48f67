"""Who is calling: the verified token's claims, as every layer below the HTTP edge sees them."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from shared.auth.scopes import Scopes
from shared.fhir.errors import FHIRError

ALL_PRACTICES = "*"


@dataclass(frozen=True)
class Principal:
    """A caller with a verified token.

    `practices` is None for programme-wide access (claim `*`), an empty set for a token with
    no practice claim (no patient data at all), else the `Organization/<id>` references.
    """

    client_id: str
    subject: str
    scopes: Scopes
    practices: frozenset[str] | None
    fhir_user: str | None = None
    token_id: str | None = None
    source: str | None = None


# Set by the authentication middleware for every HTTP request. None outside a request
# (event consumers, reactions, the relay): the service's own system work, unrestricted.
current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def acting_person() -> str:
    """The person a request acts for: the token's `fhirUser` (e.g. `Practitioner/123`); the
    operation decides which kinds of person it accepts.

    Operations that need a person (a psychiatrist's review) take it from here, never from
    the request body; a token without one is refused with 403.
    """
    who = current_principal.get()
    if who is None or not who.fhir_user:
        raise FHIRError(
            403,
            "This operation needs a person: a token whose fhirUser claim names a Practitioner",
            code="forbidden",
        )
    return who.fhir_user


def practices_from_claim(value: object) -> frozenset[str] | None:
    """The practice claim: `*`, one `Organization/<id>`, or a list of them; missing: none."""
    if value == ALL_PRACTICES:
        return None
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, list):
        if ALL_PRACTICES in value:
            return None
        values = [v for v in value if isinstance(v, str)]
    else:
        return frozenset()
    return frozenset(v for v in values if v.startswith("Organization/") and len(v) > 13)
