"""Edges of the system: PostgreSQL, Kafka and the embedded stand-ins for local work."""
