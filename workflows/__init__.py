"""Temporal workflows. Deterministic: time from `workflow.now()`, I/O only through activities."""
