"""Settings: one pydantic-settings model from the environment and an optional TOML file."""

from config.settings import (
    DatabaseSettings,
    DevSettings,
    Settings,
    SettingsError,
    TemporalSettings,
    load_settings,
)

__all__ = [
    "DatabaseSettings",
    "DevSettings",
    "Settings",
    "SettingsError",
    "TemporalSettings",
    "load_settings",
]
