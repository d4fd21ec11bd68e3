"""Settings: environment over TOML over defaults, and errors that name the field and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import starter
import worker
from cli.app import flag_overrides
from config import Settings, SettingsError, load_settings

ENV_PREFIXES = ("BACKORDER_",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray BACKORDER_* variables, and a working directory without config/backorder.toml."""
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_mean_the_embedded_stack() -> None:
    s = load_settings()
    assert s.embedded_temporal and s.embedded_database
    assert s.temporal_address == "127.0.0.1:7233"
    assert s.temporal.namespace == "default" and s.temporal.task_queue == "backorder"
    assert s.data_dir == Path(".backorder")
    assert s.policy.backorders_enabled is True
    assert not s.temporal.uses_tls


def test_environment_sets_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", "temporal.internal:7233")
    monkeypatch.setenv("BACKORDER_TEMPORAL__API_KEY", "secret-key")
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", "postgresql://app@db/backorder")
    monkeypatch.setenv("BACKORDER_POLICY__BACKORDERS_ENABLED", "false")
    s = load_settings()
    assert s.temporal_address == "temporal.internal:7233"
    assert s.temporal.uses_tls  # an API key implies TLS
    assert not s.embedded_database
    assert s.policy.backorders_enabled is False
    assert "secret-key" not in repr(s)


def test_default_toml_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "backorder.toml").write_text(
        'site = "eu"\n[temporal]\nnamespace = "shop"\ntask_queue = "bo-eu"\n'
        "[policy]\nbackorders_enabled = false\n"
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", "from-env")
    s = load_settings()
    assert s.site == "eu"
    assert s.temporal.namespace == "shop"
    assert s.temporal.task_queue == "from-env"
    assert s.policy.backorders_enabled is False


def test_explicit_config_file_overrides_the_default(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "backorder.toml").write_text('site = "default-file"\n')
    other = tmp_path / "prod.toml"
    other.write_text('site = "prod"\n')
    assert load_settings(other).site == "prod"


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"config file not found: .*nope\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_values_name_field_value_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKORDER_DEV__TEMPORAL_PORT", "70000")
    monkeypatch.setenv("BACKORDER_POLICY__BACKORDERS_ENABLED", "maybe")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "dev.temporal_port = '70000': Input should be less than or equal to 65535" in text
    assert "[env BACKORDER_DEV__TEMPORAL_PORT]" in text
    assert "policy.backorders_enabled = 'maybe'" in text


def test_unknown_setting_in_toml_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[temporal]\nnamespcae = 'x'\n")
    with pytest.raises(SettingsError, match=r"temporal.namespcae = 'x': Extra inputs"):
        load_settings(cfg)


def test_malformed_toml_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text("site = \n")
    with pytest.raises(SettingsError, match=r"broken\.toml"):
        load_settings(cfg)


def test_secrets_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKORDER_TEMPORAL__TLS_CLIENT_CERT", "/etc/cert.pem")
    monkeypatch.setenv("BACKORDER_DATABASE__POOL_MIN_SIZE", "50")
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", "postgresql://u:hunter2@db/x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "tls_client_cert and tls_client_key must be set together" in text
    assert "pool_min_size must not exceed pool_max_size" in text
    assert "hunter2" not in text


def test_commands_exit_2_with_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKORDER_DEV__UI_PORT", "abc")
    assert starter.main(["schema", "order"]) == 2
    assert "dev.ui_port = 'abc'" in capsys.readouterr().err
    assert worker.main([]) == 2
    assert "dev.ui_port = 'abc'" in capsys.readouterr().err


def test_worker_refuses_to_start_without_production_targets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert worker.main([]) == 2
    err = capsys.readouterr().err
    assert "BACKORDER_TEMPORAL__TARGET and BACKORDER_DATABASE__DSN" in err
    assert "backorder dev" in err


def test_settings_model_is_immutable() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.site = "x"  # type: ignore[misc]


def test_every_key_documented_in_the_default_file_is_a_real_setting(tmp_path: Path) -> None:
    """Uncomment every example in config/backorder.toml: each must load as a valid setting."""
    shipped = Path(__file__).parent.parent / "config" / "backorder.toml"
    text = re.sub(r"(?m)^# (\[[a-z_.]+\]|[a-z_]+ = .*?)([ \t]+#.*)?$", r"\1", shipped.read_text())
    (tmp_path / "cert.pem").write_text("x")
    text = re.sub(r'"/etc/backorder/[a-z]+\.(pem|key)"', f'"{tmp_path}/cert.pem"', text)
    uncommented = tmp_path / "all.toml"
    uncommented.write_text(text)
    s = load_settings(uncommented)
    assert s.policy.max_shipments == 3 and s.policy.tier_ranks == {
        "vip": 1, "expedited": 2, "wholesale": 3,
    }  # fmt: skip
    assert s.temporal.tls_server_name == "temporal.internal"
    assert s.dev.postgres_port == 54329


def test_a_site_changes_only_the_policy_fields_it_names(tmp_path: Path) -> None:
    cfg = tmp_path / "sites.toml"
    cfg.write_text(
        "[policy]\nfuture_inventory = true\nfuture_date_limit_days = 10\n"
        '[sites.eu.policy]\nrelease_mode = "quantity"\nfuture_date_limit_days = 20\n'
    )
    s = load_settings(cfg)
    eu, us = s.policy_for("eu"), s.policy_for("us")
    assert (eu.release_mode.value, eu.future_date_limit_days, eu.future_inventory) == (
        "quantity", 20, True,
    )  # fmt: skip
    assert (us.release_mode.value, us.future_date_limit_days) == ("full", 10)
    assert us == s.policy


def test_a_bad_site_policy_fails_at_start_naming_the_site(tmp_path: Path) -> None:
    cfg = tmp_path / "sites.toml"
    cfg.write_text('[sites.eu.policy]\nrelease_mode = "sometimes"\n')
    with pytest.raises(SettingsError, match=r"sites\.eu\.policy: release_mode = 'sometimes'"):
        load_settings(cfg)
    cfg.write_text(
        '[sites.eu.policy]\nrelease_mode = "quantity"\nacceptance_split = "entire_order"\n'
    )
    with pytest.raises(SettingsError, match=r"sites\.eu\.policy: .*use acceptance_split 'all'"):
        load_settings(cfg)


def test_dev_flags_are_validated_like_any_other_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert starter.main(["dev", "--ui-port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "dev.ui_port = 70000: Input should be less than or equal to 65535 [--ui-port]" in err
    assert "(from the command line, the environment" in err


def test_a_flag_changes_one_field_and_keeps_the_rest_of_its_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKORDER_DEV__TEMPORAL_PORT", "17233")
    args = starter.parse(["dev", "--ui-port", "18233", "--data-dir", "state"]).args
    s = load_settings(**flag_overrides(args))
    assert (s.dev.temporal_port, s.dev.ui_port, s.data_dir) == (17233, 18233, Path("state"))
    assert s.dev.postgres_port == 54329


def test_payment_and_notification_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(SettingsError, match=r"payments\.gateway = stripe needs"):
        load_settings(payments={"gateway": "stripe"})
    with pytest.raises(SettingsError, match="channel = webhook needs webhook_url and"):
        load_settings(notifications={"channel": "webhook", "webhook_url": "http://h/x"})
    with pytest.raises(SettingsError, match="channel = smtp needs smtp_host and smtp_sender"):
        load_settings(notifications={"channel": "smtp", "smtp_host": "mail"})
    with pytest.raises(SettingsError, match="retry_initial must not exceed retry_max"):
        load_settings(notifications={"retry_initial": "PT2H"})
    with pytest.raises(SettingsError, match=r"storefront\.consent_url"):
        load_settings(notifications={"storefront": {"consent_url": "https://s/{customer}"}})


def test_secrets_of_gateways_and_channels_are_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKORDER_NOTIFICATIONS__SMTP_PORT", "0")
    monkeypatch.setenv("BACKORDER_NOTIFICATIONS__WEBHOOK_SECRET", "whsec-very-secret")
    monkeypatch.setenv("BACKORDER_PAYMENTS__STRIPE_API_KEY", "sk_live_secret")
    monkeypatch.setenv("BACKORDER_PAYMENTS__TIMEOUT", "nope")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "notifications.smtp_port = '0'" in message
    assert "payments.timeout = 'nope'" in message
    assert "secret" not in message.replace("<hidden>", "")


def test_the_sandbox_and_embedded_database_addresses_follow_the_dev_ports() -> None:
    s = load_settings(dev={"payments_port": 9100, "postgres_port": 9200})
    assert s.sandbox_url == "http://127.0.0.1:9100"
    assert s.database_dsn == "postgresql://postgres@127.0.0.1:9200/backorder"
    external = load_settings(
        payments={"sandbox_url": "http://pay.internal"}, database={"dsn": "postgresql://db/x"}
    )
    assert (external.sandbox_url, external.database_dsn) == (
        "http://pay.internal",
        "postgresql://db/x",
    )


def test_a_payment_call_may_not_outlast_its_activity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls of at most 12 s fit in the payment activity's 30 s; longer ones would time
    the activity out while the gateway still works on it."""
    monkeypatch.setenv("BACKORDER_PAYMENTS__TIMEOUT", "PT20S")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "payments.timeout = 'PT20S'" in str(err.value)
    assert "[env BACKORDER_PAYMENTS__TIMEOUT]" in str(err.value)
