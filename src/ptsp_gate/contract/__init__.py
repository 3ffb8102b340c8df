"""The v1 contract: event payloads, identifiers and the CloudEvents envelope."""
