"""Read-only queries for compliance officers, and their rendering."""
