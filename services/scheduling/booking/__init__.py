"""Booking rules on Appointment (issue 10): session types, dosing sessions, no double-booking
and slots."""
