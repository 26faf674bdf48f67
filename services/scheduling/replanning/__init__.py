"""Re-planning (issue 10): sessions cancelled when enrolment ends, EMDR sessions re-proposed
when their dose falls through, and the Encounter an arrived session opens."""

from services.scheduling.replanning.encounters import follow_with_encounter
from services.scheduling.replanning.enrolment import consent_changed, episode_changed
from services.scheduling.replanning.rescheduling import (
    replan_after_dose,
    replan_after_dosing_session,
)

# Write rules on Appointment: a called-off dosing session first, then the Encounter.
APPOINTMENT_RULES = (replan_after_dosing_session, follow_with_encounter)
# The replicated events re-planning reacts to, with their reactions.
REACTIONS = tuple(
    (f"fhir.{res_type}.{action}", reaction)
    for res_type, reaction in (("EpisodeOfCare", episode_changed), ("Consent", consent_changed))
    for action in ("created", "updated", "deleted")
)
__all__ = ["APPOINTMENT_RULES", "REACTIONS", "replan_after_dose"]
