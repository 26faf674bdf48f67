"""What each route needs from the caller's scopes, declared where the route is registered.

A route of the FHIR router without a `Need` is refused (fail closed), and the security test
matrix walks the routes: a route added later without one fails the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from shared.auth.principal import Principal, current_principal
from shared.auth.scopes import INTERACTION_LETTER, parse_scope
from shared.fhir.errors import FHIRError


def forbidden(scope: str) -> FHIRError:
    """The 403 naming the scope the caller lacks."""
    return FHIRError(
        403,
        f"This request needs the scope '{scope}', which the token does not grant",
        code="forbidden",
    )


def check_letters(who: Principal | None, res_type: str, letters: str) -> None:
    """403 unless the caller may use every letter on `res_type` (None: system work)."""
    if who is None:
        return
    for letter in letters:
        if not who.scopes.allows(res_type, letter):
            raise forbidden(f"system/{res_type}.{letter}")


def check_interaction(who: Principal | None, res_type: str, interaction: str) -> None:
    """403 unless the caller's scopes cover one FHIR interaction on `res_type`."""
    check_letters(who, res_type, INTERACTION_LETTER[interaction])


def check_scope(who: Principal | None, scope: str, *, exact: bool = False) -> None:
    """403 unless the caller holds `scope`: a resource scope's letters, or (`exact`, or not
    a resource scope) the very string, which no wildcard grants."""
    if who is None:
        return
    grant = None if exact else parse_scope(scope)
    if grant is None:
        if not who.scopes.has(scope):
            raise forbidden(scope)
        return
    for letter in grant.letters:
        if not who.scopes.allows(grant.res_type, letter):
            raise forbidden(f"{grant.context}/{grant.res_type}.{letter}")


def readable_includes(who: Principal | None, query: Any, served: set[str]) -> set[str]:
    """The types `_include` and `_revinclude` may add for this caller: a search must not hand
    out what a read would refuse. A type the query names explicitly and the caller may not
    read is a 403; an untyped `_include` just leaves such types out."""
    if who is None:
        return served
    for include in query.includes:
        if include.target_type:
            check_letters(who, include.target_type, "r")
    for include in query.revincludes:
        check_letters(who, include.source_type, "r")
    return {t for t in served if who.scopes.allows(t, "r")}


@dataclass(frozen=True)
class Need:
    """A route's requirement: letters on a type (`*`: every type) or an exact scope."""

    res_type: str = "*"
    letters: str = ""
    scope: str = ""
    # Internals (`system/Ops.r`) are granted by name only, never by `system/*.r`.
    exact: bool = False

    def __call__(self, _request: Request) -> None:
        who = current_principal.get()
        if self.scope:
            check_scope(who, self.scope, exact=self.exact)
        else:
            check_letters(who, self.res_type, self.letters)


def needs(need: Need) -> list[Depends]:  # type: ignore[valid-type]
    """The `dependencies=` of a route with this requirement."""
    return [Depends(need)]


def need_of(route: object) -> Need | None:
    """The Need a route was registered with, if any."""
    dependant = getattr(route, "dependant", None)
    for dependency in getattr(dependant, "dependencies", []):
        if isinstance(dependency.call, Need):
            return dependency.call
    return None
