"""Booking in the plasticity window (issue 10): `$find`, `$hold`, `$book` and the EMDR
window rule. The extensions' URLs live here."""


def hold_expires_url(base: str) -> str:
    """A `pending` Appointment held by `$hold`: when the hold lapses (valueDateTime)."""
    return f"{base}/StructureDefinition/hold-expires"


def window_override_url(base: str) -> str:
    """An EMDR Appointment booked outside its dose's window on purpose: the reason
    (valueString), kept on the resource."""
    return f"{base}/StructureDefinition/emdr-window-override"
