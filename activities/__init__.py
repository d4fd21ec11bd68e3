"""Activities: the only place with I/O (PostgreSQL, HTTP). Each is small and idempotent."""
