"""Keeps the enrolment projection current from BPJS TK's employer-state stream."""
