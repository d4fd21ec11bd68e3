"""Wiring from settings to live connections: Temporal client, database pool, `backorder dev`."""
