"""Edges of the system: connections to PostgreSQL and Kafka, and database migrations."""
