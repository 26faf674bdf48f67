"""The research export: consented patients' scores as de-identified CSV (`$research-export`)."""
