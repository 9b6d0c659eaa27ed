"""Idempotency keys: a retried SDK call is applied once and answered with the first result."""
