"""The statistics outcomes reports: effect sizes, proportions, means and the window comparison.

Pure functions over numbers (no database, no FHIR): the operations aggregate in SQL and hand
the aggregates here.
"""
