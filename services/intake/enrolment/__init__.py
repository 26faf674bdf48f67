"""Enrolment after screening: the psychiatrist's review, the treatment Consent's effect on
the episode, and the patient's enrolment status at a glance."""
