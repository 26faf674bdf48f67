"""Baselines from screening: the PHQ-9 and PCL-5 totals derived from intake's screening
QuestionnaireResponses as Observations (see README.md for the scoring rules)."""

from services.outcomes.baselines.reactions import REACTIONS

__all__ = ["REACTIONS"]
