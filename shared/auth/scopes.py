"""SMART App Launch 2.x scopes (`system/Observation.rs`, `user/*.cruds`, v1 `.read`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The interaction letters of SMART v2: create, read, update, delete, search.
LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z]{1,64}|\*)\.([a-z*]{1,5})(\?.*)?$")

# The FHIR write interaction of each HTTP method (a read is GET, whatever its level).
WRITE_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

# What each FHIR interaction needs (history reads, so it needs r).
INTERACTION_LETTER = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}


@dataclass(frozen=True)
class Grant:
    """One resource scope: a context, a type (or `*`) and its letters."""

    context: str
    res_type: str
    letters: str


def parse_scope(text: str) -> Grant | None:
    """A resource scope, or None for anything else (`openid`, `launch`, `system/Ops.r`...)."""
    match = _SCOPE.match(text)
    if not match:
        return None
    context, res_type, letters, query = match.groups()
    if query:
        # A granular scope (`?category=...`) grants a subset this server cannot enforce:
        # it grants nothing rather than everything of the type.
        return None
    if letters in _V1:
        letters = _V1[letters]
    elif any(ch not in LETTERS for ch in letters) or list(letters) != sorted(
        letters, key=LETTERS.index
    ):
        return None  # v2 letters must come in the order c r u d s
    return Grant(context, res_type, letters)


@dataclass(frozen=True)
class Scopes:
    """The scopes a token grants, checked per resource type and letter."""

    raw: frozenset[str]
    grants: tuple[Grant, ...]

    @classmethod
    def parse(cls, text: object) -> Scopes:
        """Parse the space-separated `scope` claim (or `scp` list)."""
        if isinstance(text, str):
            items = text.split()
        elif isinstance(text, list):
            items = [item for item in text if isinstance(item, str)]
        else:
            items = []  # an issuer's odd claim type grants nothing
        grants = tuple(g for g in (parse_scope(item) for item in items) if g is not None)
        return cls(frozenset(items), grants)

    def allows(self, res_type: str, letter: str) -> bool:
        """Whether a system/ or user/ grant covers `letter` on `res_type`."""
        # patient/ scopes need a launch context (one patient) these services do not serve.
        return any(
            g.context in ("system", "user")
            and g.res_type in (res_type, "*")
            and letter in g.letters
            for g in self.grants
        )

    def has(self, scope: str) -> bool:
        """Whether the exact scope string was granted (e.g. `system/Ops.r`)."""
        return scope in self.raw
