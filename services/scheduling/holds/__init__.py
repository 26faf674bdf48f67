"""Dosing-session safety: body weight, the session of a dose, pre-dose holds and rescues."""
