"""Observations at outcomes: the measures file, its CodeSystem, and the write rules."""
