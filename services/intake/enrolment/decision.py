"""What a change of treatment consent does to an episode: a pure decision."""

from __future__ import annotations

# Statuses of a patient cleared for treatment: screened all clear, or reviewed eligible.
CLEARED = ("waitlist", "active")


def status_after_consent(current: str, screened: str | None, consent_in_force: bool) -> str:
    """The episode's status once the treatment consent is (or is no longer) in force.

    `current` is the episode's status; `screened` the status the newest screening response
    implies under today's rule table (None: no evaluated response). Only a cleared episode
    follows consent: planned (not screened), onhold (awaiting review), cancelled (excluded)
    and finished keep their status, so a psychiatrist's review is never undone. Losing
    consent always stops treatment; gaining it starts treatment only while a screening on
    file shows no absolute contraindication.
    """
    if current not in CLEARED:
        return current
    if not consent_in_force:
        return "waitlist"
    if screened is None or screened == "cancelled":
        return current
    return "active"
