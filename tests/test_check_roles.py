"""Who may run a manual check: with `allocator.check_roles` set, `backorder check` and
`backorder order check` need a user (`BACKORDER_OPERATOR`, else the OS login) holding one of
those roles in `operators`; anyone else is refused before Temporal is contacted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import cli.common
from cli.errors import CliError
from cli.roles import OPERATOR_ENV, check_refusal, operator_name, require_check_role
from config import Settings, SettingsError, load_settings
from embedded.process import free_port
from runtime.connections import connect_temporal
from tests.conftest import Cli

REFUSED_BOB = (
    "check refused: user bob has none of the roles supervisor, planner "
    "(settings: operators, allocator.check_roles)"
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray BACKORDER_* variables, and a working directory without config/backorder.toml."""
    for name in list(os.environ):
        if name.startswith("BACKORDER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def guarded(**operators: list[str]) -> Settings:
    return Settings(allocator={"check_roles": ["supervisor", "planner"]}, operators=operators)


# -- the rule -------------------------------------------------------------------------------------


def test_without_check_roles_anyone_may_check() -> None:
    s = Settings(operators={"alice": ["supervisor"]})
    assert [check_refusal(s, user) for user in ("alice", "bob", None)] == [None, None, None]


def test_one_of_the_roles_is_enough() -> None:
    s = guarded(alice=["supervisor"], carol=["clerk", "planner"], dave=["clerk"])
    assert check_refusal(s, "alice") is None
    assert check_refusal(s, "carol") is None
    assert check_refusal(s, "dave") == REFUSED_BOB.replace("bob", "dave")


def test_a_user_not_among_the_operators_is_refused() -> None:
    assert check_refusal(guarded(alice=["supervisor"]), "bob") == REFUSED_BOB
    assert check_refusal(guarded(alice=["supervisor"]), "Alice") is not None  # names are exact


def test_a_user_nobody_can_name_is_refused_and_told_how_to_say_who_they_are() -> None:
    assert check_refusal(guarded(alice=["supervisor"]), None) == (
        "check refused: cannot tell who you are (set BACKORDER_OPERATOR); a check needs one of "
        "the roles supervisor, planner (settings: operators, allocator.check_roles)"
    )


def test_the_user_is_backorder_operator_else_the_os_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "night-shift")
    assert operator_name({OPERATOR_ENV: "alice"}) == "alice"
    assert operator_name({OPERATOR_ENV: ""}) == "night-shift"
    assert operator_name({}) == "night-shift"

    def nobody() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr("getpass.getuser", nobody)
    assert operator_name({}) is None


def test_without_check_roles_the_user_is_never_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    def asked() -> str:
        raise AssertionError("who the user is does not matter without check_roles")

    monkeypatch.setattr("getpass.getuser", asked)
    require_check_role(Settings(operators={"alice": ["supervisor"]}))
    monkeypatch.setenv(OPERATOR_ENV, "bob")
    with pytest.raises(CliError, match=r"^check refused: user bob has none of the roles"):
        require_check_role(guarded(alice=["supervisor"]))


def test_roles_and_operators_come_from_the_environment_and_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings().allocator.check_roles == () and load_settings().operators == {}
    cfg = tmp_path / "roles.toml"
    cfg.write_text(
        '[allocator]\ncheck_roles = ["supervisor"]\n[operators]\nalice = ["supervisor"]\n'
        'bob = ["planner", "clerk"]\n'
    )
    s = load_settings(cfg)
    assert s.allocator.check_roles == ("supervisor",)
    assert s.operators == {"alice": ("supervisor",), "bob": ("planner", "clerk")}
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_ROLES", '["supervisor", "planner"]')
    monkeypatch.setenv("BACKORDER_OPERATORS", '{"carol": ["planner"], "bob": []}')
    s = load_settings(cfg)
    assert s.allocator.check_roles == ("supervisor", "planner")
    # the environment's users are merged into the file's, a user's roles replaced whole
    assert s.operators == {"alice": ("supervisor",), "bob": (), "carol": ("planner",)}


def test_an_empty_role_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKORDER_OPERATORS", '{"alice": ["supervisor", ""]}')
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_ROLES", '[""]')
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "  operators.alice.1 = '': String should have at least 1 character" in text
    assert "  allocator.check_roles.0 = '': String should have at least 1 character" in text


# -- the commands ---------------------------------------------------------------------------------

CHECK_COMMANDS = [("check",), ("check", "--order", "A-1"), ("order", "check", "A-1")]


@pytest.fixture
def no_temporal(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Temporal is a free port nobody listens on; what it returns lists the addresses the
    commands tried to reach (so a refusal can be shown to have contacted nothing)."""
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", f"127.0.0.1:{free_port()}")
    tried: list[str] = []

    async def recorded(settings: Settings) -> object:
        tried.append(settings.temporal_address)
        return await connect_temporal(settings)

    monkeypatch.setattr(cli.common, "connect_temporal", recorded)
    return lambda: tried


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check needs supervisor or planner; alice is a supervisor, bob is not an operator."""
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_ROLES", '["supervisor", "planner"]')
    monkeypatch.setenv("BACKORDER_OPERATORS", '{"alice": ["supervisor"], "erin": ["clerk"]}')


@pytest.mark.parametrize("argv", CHECK_COMMANDS, ids=" ".join)
def test_a_user_without_a_check_role_is_refused_before_temporal(
    argv: tuple[str, ...],
    run_cli: Cli,
    roles: None,
    no_temporal: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OPERATOR_ENV, "bob")
    assert run_cli(*argv) == (1, "", f"backorder: {REFUSED_BOB}\n")
    monkeypatch.setenv(OPERATOR_ENV, "erin")  # an operator, with another role
    assert run_cli(*argv) == (1, "", f"backorder: {REFUSED_BOB.replace('bob', 'erin')}\n")
    assert no_temporal() == []


@pytest.mark.parametrize("argv", CHECK_COMMANDS, ids=" ".join)
def test_the_os_login_is_the_user_when_backorder_operator_is_not_set(
    argv: tuple[str, ...],
    run_cli: Cli,
    roles: None,
    no_temporal: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    assert run_cli(*argv) == (1, "", f"backorder: {REFUSED_BOB}\n")
    assert no_temporal() == []
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    code, _, err = run_cli(*argv)
    assert code == 1
    assert err.startswith("backorder: cannot reach Temporal at 127.0.0.1:"), err
    assert len(no_temporal()) == 1


@pytest.mark.parametrize("argv", CHECK_COMMANDS, ids=" ".join)
def test_an_allowed_user_gets_past_the_role_check(
    argv: tuple[str, ...],
    run_cli: Cli,
    roles: None,
    no_temporal: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alice is a supervisor: the command goes on to Temporal (which is not there)."""
    monkeypatch.setenv(OPERATOR_ENV, "alice")
    monkeypatch.setattr("getpass.getuser", lambda: "bob")  # the variable wins over the login
    code, out, err = run_cli(*argv)
    assert (code, out) == (1, "")
    assert err.startswith(f"backorder: cannot reach Temporal at {no_temporal()[0]}"), err
    assert "check refused" not in err


@pytest.mark.parametrize("argv", CHECK_COMMANDS, ids=" ".join)
def test_without_check_roles_anyone_gets_past(
    argv: tuple[str, ...],
    run_cli: Cli,
    no_temporal: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OPERATOR_ENV, "bob")
    code, _, err = run_cli(*argv)
    assert code == 1
    assert err.startswith("backorder: cannot reach Temporal at 127.0.0.1:"), err
    assert len(no_temporal()) == 1
