"""Dead letters as an operator sees them, and reading them back from Kafka."""
