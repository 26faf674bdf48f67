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


def status_after_rescreening(
    evaluated: str, found: set[str], reviewed: dict[str, str], consent_in_force: bool
) -> str:
    """The episode's status after a changed screening, given the reviews on record.

    `evaluated` is what the new answers imply alone; `found` their rule keys; `reviewed` the
    decision (eligible or excluded) a psychiatrist recorded per rule key still open. An
    absolute finding cancels whatever was reviewed. A patient reviewed excluded is not
    cleared by new answers without a new review (onhold); one reviewed eligible stays cleared
    while every relative finding was among those reviewed.
    """
    if evaluated == "cancelled" or not reviewed:
        return evaluated
    if "excluded" in reviewed.values():
        return "onhold"
    if evaluated == "onhold" and found <= set(reviewed):
        return "active" if consent_in_force else "waitlist"
    return evaluated
