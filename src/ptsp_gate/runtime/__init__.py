"""What every service shares at run time: reading records, the consumer loop, the outbox relay,
the HTTP probes and the worker supervisor."""
