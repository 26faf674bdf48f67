"""OAuth errors and scope arithmetic shared by both grants of the dev issuer."""

from __future__ import annotations

from shared.auth.scopes import parse_scope

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An error the token endpoint answers as OAuth JSON (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def covers(allowed: str, requested: str) -> bool:
    """Whether an allowed scope includes a requested one (same context, type, fewer letters)."""
    if allowed == requested:
        return True
    have, want = parse_scope(allowed), parse_scope(requested)
    if have is None or want is None:
        return False
    return (
        have.context == want.context
        and have.res_type in ("*", want.res_type)
        and set(want.letters) <= set(have.letters)
    )


def granted(requested: list[str] | tuple[str, ...], *allowed: tuple[str, ...]) -> list[str]:
    """The requested scopes every one of the `allowed` lists covers, in the requested order."""
    return [s for s in requested if all(any(covers(a, s) for a in scopes) for scopes in allowed)]
