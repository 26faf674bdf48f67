"""`make demo`: a seeded synthetic cohort loaded through the services' public APIs.

`cohort` lays the programme out as pure, seeded functions (the FHIR bodies and the order they
are sent in); `loader` sends them to intake, scheduling and outcomes as an EHR and a clinic
would, waiting where one service must first learn from another's events.
"""
