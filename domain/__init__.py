"""Pure domain logic: models and rules with no I/O and no clock.

Everything here is safe to import from workflow code (deterministic) and from activities.
"""
