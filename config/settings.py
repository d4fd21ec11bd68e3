"""Where the service runs and how it behaves, read once at start.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(`BACKORDER_` prefix, `__` between nested names, e.g. `BACKORDER_TEMPORAL__TARGET`), the TOML
file (`config/backorder.toml` in the working directory, or `--config PATH`), then defaults.
Empty Temporal target and empty PostgreSQL DSN mean "embedded": `backorder dev` starts both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain.policy import BackorderPolicy
from notifications.render import Storefront

DEFAULT_CONFIG_FILE = Path("config/backorder.toml")
CONFIG_FILE_ENV = "BACKORDER_CONFIG"

Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemporalSettings(_Section):
    """The Temporal cluster: empty target means the embedded dev server."""

    target: str = ""
    """host:port of the frontend, e.g. `temporal.internal:7233` or `<ns>.<acct>.tmprl.cloud:7233`.
    Empty: the embedded dev server at `dev.host:dev.temporal_port`."""
    namespace: str = Field(default="default", min_length=1)
    task_queue: str = Field(default="backorder", min_length=1)
    """The orders' task queue (their workflows and activities)."""
    allocator_task_queue: str = ""
    """The allocators' own task queue, so a pass and its answer to the feed never wait behind
    the orders' work. Empty: `<task_queue>-allocator`; the same as `task_queue`: one queue."""
    tls: bool = False
    """Use TLS (implied by an API key or a client certificate)."""
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_server_ca: Path | None = None
    tls_server_name: str | None = None
    api_key: SecretStr | None = None
    """Temporal Cloud API key; sent as a bearer token over TLS."""

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TemporalSettings:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("tls_client_cert and tls_client_key must be set together")
        return self

    @property
    def allocator_queue(self) -> str:
        return self.allocator_task_queue or f"{self.task_queue}-allocator"

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.api_key is not None or self.tls_client_cert is not None


class DatabaseSettings(_Section):
    """The application's PostgreSQL (ledger, reservations, read model, outbox)."""

    dsn: SecretStr = SecretStr("")
    """libpq connection string or URI; empty means the embedded PostgreSQL of `backorder dev`."""
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self


class DevSettings(_Section):
    """Ports and address of the embedded services started by `backorder dev`."""

    host: str = "127.0.0.1"
    temporal_port: Port = 7233
    ui_port: Port = 8233
    postgres_port: Port = 54329
    payments_port: Port = 8470
    """The sandbox payment gateway served by `backorder dev` (when `payments.sandbox_url` is
    empty)."""
    temporal_log_level: str = Field(default="warn", pattern=r"^(debug|info|warn|error)$")


_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _time_of_day(value: str) -> str:
    """`HH:MM` on a 24-hour clock, one spelling only (no `6:00`, no seconds): two spellings of
    one time cannot hide a duplicate."""
    if not _TIME_OF_DAY.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day HH:MM (00:00 to 23:59)")
    return value


CheckTime = Annotated[str, AfterValidator(_time_of_day)]
Role = Annotated[str, Field(min_length=1)]


@cache
def _iana_zones() -> frozenset[str]:
    """The zone database's names; `localtime` is this machine's zone, not the server's."""
    return frozenset(available_timezones()) - {"localtime"}


class AllocatorSettings(_Section):
    """The allocator of each site: how it batches inventory events, how often and at which
    times of day it sweeps, and who may ask it for a check by hand."""

    batch_window: timedelta = Field(
        default=timedelta(seconds=2), ge=timedelta(0), le=timedelta(minutes=10)
    )
    """How long the allocator gathers events for its next pass, under load only: when events
    arrived while its last pass ran. An idle allocator runs a pass as soon as an event comes
    (0: never gather)."""
    sweep_interval: timedelta = Field(default=timedelta(hours=1), ge=timedelta(minutes=1))
    """A Temporal Schedule runs a full check this often: the safety net for a missed event,
    and the moment future receipts come within the future date limit."""
    delivery_concurrency: int = Field(default=100, ge=1, le=500)
    """Allotment signals sent at once after a pass (their outcomes are recorded in batches, so
    this many signals in flight hold no database connection)."""
    check_times: tuple[CheckTime, ...] = ()
    """Times of day (`"HH:MM"`, in `check_timezone`) the sweep schedule also runs a full check,
    besides every `sweep_interval`: a merchant's daily check at set hours."""
    check_timezone: str = "UTC"
    """The IANA zone `check_times` are read in (the schedule's own zone, daylight saving
    included)."""
    check_roles: tuple[Role, ...] = ()
    """Roles (from `operators`) of which a user needs one to run `backorder check` or
    `backorder order check`; empty: anyone may."""

    @field_validator("check_times")
    @classmethod
    def _no_repeated_times(cls, times: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({t for t in times if times.count(t) > 1})
        if repeated:
            raise ValueError(f"check time {', '.join(repeated)} given more than once")
        return times

    @field_validator("check_timezone")
    @classmethod
    def _iana_zone(cls, zone: str) -> str:
        # the Temporal server reads the zone, not Python: only names of the IANA database
        # (no `localtime`, no file paths, which ZoneInfo would open)
        if zone not in _iana_zones():
            raise ValueError(f"{zone!r} is not an IANA time zone name (e.g. Europe/London)")
        return zone


class PaymentSettings(_Section):
    """The payment gateway the payment activities talk to (over HTTP, with httpx)."""

    gateway: Literal["sandbox", "stripe"] = "sandbox"
    """`sandbox`: the project's own gateway (state in PostgreSQL, faults injectable);
    `stripe`: Stripe PaymentIntents with manual capture."""
    sandbox_url: str = ""
    """Base URL of the sandbox gateway; empty: the one `backorder dev` serves on
    `dev.host:dev.payments_port`."""
    sandbox_authorisation_days: int = Field(default=7, ge=1, le=365)
    """How long the sandbox's authorisations hold before they lapse."""
    stripe_api_key: SecretStr | None = None
    stripe_base_url: str = "https://api.stripe.com"
    timeout: timedelta = Field(
        default=timedelta(seconds=10), gt=timedelta(0), le=timedelta(seconds=12)
    )
    """One HTTP call's limit; a call that takes longer is retried by Temporal, same key. At
    most 12 s: a payment activity (up to two calls) must finish within its 30-s start-to-close
    timeout, which is also how long a payment a dead worker held waits to be retried."""

    @model_validator(mode="after")
    def _stripe_needs_a_key(self) -> PaymentSettings:
        if self.gateway == "stripe" and not (
            self.stripe_api_key and self.stripe_api_key.get_secret_value()
        ):
            raise ValueError("payments.gateway = stripe needs payments.stripe_api_key")
        return self


class NotificationSettings(_Section):
    """How customer notices leave the outbox: not at all (`outbox`), by webhook or by SMTP."""

    channel: Literal["outbox", "webhook", "smtp"] = "outbox"
    """`outbox`: notices are rendered and kept in PostgreSQL only (`backorder notifications`
    lists them); `webhook`: POSTed, HMAC-signed, to `webhook_url`; `smtp`: mailed."""
    storefront: Storefront = Storefront()
    """Shop name, support address and the consent/cancel links the texts carry."""
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    """Shared secret of the `Backorder-Signature` HMAC-SHA256 header."""
    smtp_host: str = ""
    smtp_port: Port = 25
    smtp_sender: str = ""
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    timeout: timedelta = Field(default=timedelta(seconds=10), gt=timedelta(0))
    max_attempts: int = Field(default=12, ge=1, le=1000)
    """Tries of one notice before it is marked failed and raised to an operator."""
    retry_initial: timedelta = Field(default=timedelta(seconds=30), gt=timedelta(0))
    retry_max: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    """A failed try is retried after `retry_initial`, doubling up to `retry_max`."""
    poll_interval: timedelta = Field(default=timedelta(minutes=1), ge=timedelta(seconds=1))
    """The delivery workflow looks at the outbox at least this often (a notice whose wake-up
    signal was lost, after a crash between commit and signal, waits at most this long)."""
    batch_size: int = Field(default=100, ge=1, le=10_000)
    concurrency: int = Field(default=10, ge=1, le=200)

    @model_validator(mode="after")
    def _channel_complete(self) -> NotificationSettings:
        if self.channel == "webhook" and not (
            self.webhook_url and self.webhook_secret.get_secret_value()
        ):
            raise ValueError("notifications.channel = webhook needs webhook_url and webhook_secret")
        if self.channel == "smtp" and not (self.smtp_host and self.smtp_sender):
            raise ValueError("notifications.channel = smtp needs smtp_host and smtp_sender")
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError("notifications: smtp_starttls and smtp_tls exclude each other")
        if self.retry_initial > self.retry_max:
            raise ValueError("notifications.retry_initial must not exceed retry_max")
        return self


SiteName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]


class SiteSettings(_Section):
    """What one site changes on top of the deployment-wide settings (`[sites.<name>]`)."""

    policy: dict[str, Any] = Field(default_factory=dict)
    """Policy fields that differ for this site: `[sites.eu.policy]` `release_mode = "quantity"`."""


class Settings(BaseSettings):
    """All settings of one deployment of the service."""

    model_config = SettingsConfigDict(
        env_prefix="BACKORDER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    site: SiteName = "default"
    """The merchant site this deployment serves (one allocator per site)."""
    data_dir: Path = Path(".backorder")
    """Where the embedded services keep their state (Temporal SQLite file, PostgreSQL cluster)."""
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    temporal: TemporalSettings = TemporalSettings()
    database: DatabaseSettings = DatabaseSettings()
    dev: DevSettings = DevSettings()
    allocator: AllocatorSettings = AllocatorSettings()
    payments: PaymentSettings = PaymentSettings()
    notifications: NotificationSettings = NotificationSettings()
    policy: BackorderPolicy = BackorderPolicy()
    """The backorder policy of every site, unless `sites.<name>.policy` changes it."""
    sites: dict[SiteName, SiteSettings] = Field(default_factory=dict)
    operators: dict[Annotated[str, Field(min_length=1)], tuple[Role, ...]] = Field(
        default_factory=dict
    )
    """User name -> roles (`[operators]` `alice = ["supervisor"]`), for `allocator.check_roles`.
    The CLI's user is `$BACKORDER_OPERATOR`, else the OS login."""

    @model_validator(mode="after")
    def _site_policies_valid(self) -> Settings:
        for name in self.sites:
            self.policy_for(name)  # a bad override fails at start, naming the site
        return self

    def policy_for(self, site: str) -> BackorderPolicy:
        """The policy of `site`: the deployment's policy with that site's changes."""
        overrides = self.sites.get(site)
        if overrides is None or not overrides.policy:
            return self.policy
        try:
            return self.policy.override(**overrides.policy)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}"
                if e["loc"]
                else e["msg"]
                for e in err.errors()
            )
            raise ValueError(f"sites.{site}.policy: {problems}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _active_toml.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def embedded_temporal(self) -> bool:
        return not self.temporal.target

    @property
    def embedded_database(self) -> bool:
        return not self.database.dsn.get_secret_value()

    @property
    def database_dsn(self) -> str:
        """The configured DSN, or the embedded PostgreSQL's that `backorder dev` runs."""
        if not self.embedded_database:
            return self.database.dsn.get_secret_value()
        return f"postgresql://postgres@{self.dev.host}:{self.dev.postgres_port}/backorder"

    @property
    def sandbox_url(self) -> str:
        """The sandbox gateway's base URL: configured, or the one `backorder dev` serves."""
        return self.payments.sandbox_url or f"http://{self.dev.host}:{self.dev.payments_port}"

    @property
    def temporal_address(self) -> str:
        """The frontend to connect to: the configured cluster, or the embedded dev server."""
        return self.temporal.target or f"{self.dev.host}:{self.dev.temporal_port}"


_active_toml: ContextVar[Path | None] = ContextVar("backorder_toml", default=None)
"""The TOML file of the settings being loaded (sources are chosen by a classmethod)."""


class SettingsError(Exception):
    """Settings that cannot be used; the message names each bad field and value."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings, raising SettingsError with one line per bad field.

    `config_file` (the CLI's `--config`) must exist; otherwise `$BACKORDER_CONFIG`, then
    `config/backorder.toml` in the working directory, are read when present.
    """
    from_env = os.environ.get(CONFIG_FILE_ENV)
    explicit = config_file or (Path(from_env) if from_env else None)
    if explicit is not None and not explicit.is_file():
        raise SettingsError(f"config file not found: {explicit}")
    toml = explicit or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
    token = _active_toml.set(toml)
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise SettingsError(_describe(err, toml, _paths(overrides))) from None
    except ValueError as err:  # malformed TOML or an env value that is not valid JSON
        raise SettingsError(f"invalid settings ({toml or 'environment'}): {err}") from None
    finally:
        _active_toml.reset(token)


_SECRET_FIELDS = ("dsn", "api_key", "secret", "password")


def _paths(given: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The fields given as keyword overrides (a command's flags), as `loc` paths."""
    paths: set[tuple[str, ...]] = set()
    for name, value in given.items():
        path = (*prefix, name)
        paths |= _paths(value, path) if isinstance(value, dict) else {path}
    return paths


def _describe(
    err: ValidationError, toml: Path | None, flags: AbstractSet[tuple[str, ...]] = frozenset()
) -> str:
    where = f" (from the environment or {toml})" if toml else " (from the environment)"
    if flags:
        where = where.replace("(from the", "(from the command line, the")
    lines = [f"invalid settings{where}:"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        if isinstance(value, dict):  # a rule across fields: name the section, not its values
            lines.append(f"  {field}: {message}" if field else f"  {message}")
            continue
        # a list is set whole (`allocator.check_times.1` is in BACKORDER_ALLOCATOR__CHECK_TIMES)
        env = "BACKORDER_" + "__".join(str(p).upper() for p in e["loc"] if not isinstance(p, int))
        secret = any(k in field for k in _SECRET_FIELDS)
        # as the user writes it (`'PT20S'`, not `datetime.timedelta(seconds=20)`)
        shown = "<hidden>" if secret else repr(to_jsonable_python(value, fallback=repr))
        given = tuple(str(p) for p in e["loc"]) in flags
        source = f"--{str(e['loc'][-1]).replace('_', '-')}" if given else f"env {env}"
        lines.append(f"  {field} = {shown}: {message} [{source}]")
    return "\n".join(lines)
