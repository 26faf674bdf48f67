"""Test identities: a principal set directly, for tests below the HTTP edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.auth.principal import Principal, current_principal, practices_from_claim
from shared.auth.scopes import Scopes


def principal(
    scope: str = "system/*.cruds",
    practice: object = "*",
    *,
    user: str | None = None,
    client_id: str = "test-client",
) -> Principal:
    """A caller as a verified token would describe it."""
    return Principal(
        client_id=client_id,
        subject=client_id,
        scopes=Scopes.parse(scope),
        practices=practices_from_claim(practice),
        fhir_user=user,
        source="127.0.0.1",
    )


@contextlib.contextmanager
def acting_as(who: Principal | None) -> Iterator[None]:
    """Run the block as `who` (in-process ASGI calls share the caller's context)."""
    token = current_principal.set(who)
    try:
        yield
    finally:
        current_principal.reset(token)
