"""The production compose file stays consistent with the code it deploys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import load_settings

ROOT = Path(__file__).parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def resolved(env: dict[str, str]) -> dict[str, str]:
    """Apply compose's `${VAR:-default}` with nothing set, as a bare `docker compose up` does."""
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_the_stack_has_the_documented_services() -> None:
    assert set(COMPOSE["services"]) == {
        "temporal-postgresql", "temporal-schema", "temporal", "temporal-ui",
        "app-postgresql", "backorder-setup", "payments-sandbox", "backorder-worker",
    }  # fmt: skip


@pytest.mark.parametrize("service", ["backorder-setup", "backorder-worker"])
def test_worker_environment_is_valid_production_settings(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in resolved(COMPOSE["services"][service]["environment"]).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert not settings.embedded_temporal and not settings.embedded_database
    assert settings.temporal_address == "temporal:7233"
    assert settings.database.dsn.get_secret_value().startswith("postgresql://backorder:")
    assert settings.sandbox_url == "http://payments-sandbox:8470"  # the worker may start


def test_the_sandbox_service_runs_a_command_the_cli_has() -> None:
    import starter

    entry = COMPOSE["services"]["payments-sandbox"]["entrypoint"]
    assert entry[0] == "backorder"
    args = starter.parser().parse_args(entry[1:])
    assert callable(args.run) and (args.host, args.port) == ("0.0.0.0", 8470)


def test_setup_runs_commands_the_cli_has() -> None:
    import starter

    entry = " ".join(COMPOSE["services"]["backorder-setup"]["entrypoint"])
    for command in re.findall(r"backorder ([a-z]+ [a-z]+)", entry):
        args = starter.parser().parse_args(command.split())
        assert callable(args.run), command


def test_temporal_schema_script_and_dynamic_config_exist() -> None:
    assert (ROOT / "deploy/temporal/setup-postgres.sh").stat().st_mode & 0o111
    dyn = COMPOSE["services"]["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert (ROOT / "deploy/temporal/dynamicconfig" / Path(dyn).name).is_file()
