"""Shared fixtures. Real Kafka appears only in the session-scoped broker fixture."""
