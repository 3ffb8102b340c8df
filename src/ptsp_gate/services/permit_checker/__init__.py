"""Consumes permit applications and renewals, decides, records and announces the decision."""
