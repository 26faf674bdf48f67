"""Medical screening: the screening Questionnaire, the contraindication rule table, and the
evaluation of a QuestionnaireResponse into DetectedIssues and the patient's EpisodeOfCare."""
