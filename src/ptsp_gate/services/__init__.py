"""The two services and what they share (intake of raw records, the outbox, the runtime)."""
