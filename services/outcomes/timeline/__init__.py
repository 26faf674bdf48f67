"""Each patient's timeline as narrow tables (scores, doses, EMDR sessions, encounters,
consents), kept in step with the stored resources for SQL aggregation."""
