"""The one error type every command raises for the user."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure: printed as one clear message, exit code 1."""
