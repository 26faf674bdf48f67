"""Dosing: the protocols, the plasticity window, CarePlan tailoring and dose checks."""
