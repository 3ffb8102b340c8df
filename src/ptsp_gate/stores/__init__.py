"""All SQL of the system: one module per kind of stored thing."""
