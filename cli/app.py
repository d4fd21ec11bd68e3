"""The `backorder` command line on Click: how a command is declared, its values parsed, its
settings loaded and its handler run.

A command module declares its commands with `command` and `group` and Click's own
`click.Option` / `click.Argument`; its handlers keep the shape `handler(settings, args)`, the
parsed values as attributes of `args` (named as Click names them: `--by-sku` is `by_sku`).
Values are checked by the parsers of `cli.common` wrapped with `typed`: a bad one is a usage
error naming the option and why (exit 2), before any service is called. `starter.main` runs
the root and turns every failure a user can cause into a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.errors import BadValue
from config import Settings, load_settings

T = TypeVar("T")

Handler = Callable[[Settings, argparse.Namespace], None]
"""What runs a command: the settings, and the parsed values as attributes."""

DEV_PORTS = ("temporal_port", "ui_port", "postgres_port", "payments_port")
"""`backorder dev` flags that are settings (`dev.*`), validated like every other source."""


class Typed(click.ParamType[Any]):
    """A value parsed by one of our parsers (`site_arg`, `order_id_arg`, `whole_number`...):
    its BadValue or ValueError is Click's usage error, naming the option."""

    def __init__(self, parse: Callable[[str], Any], name: str) -> None:
        self.parse, self.name = parse, name

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.name.upper()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default, already what the parser returns
            return value
        try:
            return self.parse(value)
        except (BadValue, ValueError) as err:
            self.fail(str(err), param, ctx)


def typed(parse: Callable[[str], T], name: str) -> Any:
    """`type=` for a click.Option or click.Argument parsed by `parse`."""
    return Typed(parse, name)


def flag(*names: str, help: str) -> click.Option:
    """An on/off option (`--json`)."""
    return click.Option(list(names), is_flag=True, default=False, help=help)


def command(
    name: str, handler: Handler, help: str, *params: click.Parameter, **extra: Any
) -> click.Command:
    """A command that runs `handler` with the settings and its parsed values."""
    return click.Command(name, callback=_runs(handler), params=list(params), help=help, **extra)


def group(
    name: str,
    help: str,
    *params: click.Parameter,
    handler: Handler | None = None,
    **extra: Any,
) -> click.Group:
    """Commands under a name (`order start`, `order list`...). With `handler`, the group runs
    it when no command is named (`backorder exceptions` lists, `exceptions show 4` shows)."""
    callback = None
    if handler is not None:
        run = _runs(handler)

        @click.pass_context
        def callback(ctx: click.Context, /, **values: Any) -> None:
            if ctx.invoked_subcommand is None:
                ctx.invoke(run, **values)

        callback.handler = handler  # type: ignore[attr-defined]

    return click.Group(
        name,
        callback=callback,
        params=list(params),
        help=help,
        invoke_without_command=handler is not None,
        no_args_is_help=handler is None,
        **extra,
    )


def one_of(args: argparse.Namespace, *names: str) -> None:
    """At most one of these options (`--json` or `--html`): a usage error otherwise."""
    given = [
        f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) not in (None, False, ())
    ]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} cannot be given together")


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as the command's flags (`backorder dev --temporal-port`)."""
    dev = {n: v for n in DEV_PORTS if (v := getattr(args, n, None)) is not None}
    overrides: dict[str, Any] = {"dev": dev} if dev else {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


def settings_for(ctx: click.Context, args: argparse.Namespace) -> Settings:
    """The settings: the root's `--config` file (or the default), the environment, and the
    command's own settings flags."""
    config: Path | None = ctx.find_root().params.get("config")
    return load_settings(config, **flag_overrides(args))


def _runs(handler: Handler) -> Callable[..., None]:
    @click.pass_context
    def run(ctx: click.Context, /, **values: Any) -> None:
        args = argparse.Namespace(**{**_parents(ctx), **values})
        handler(settings_for(ctx, args), args)

    run.handler = handler  # type: ignore[attr-defined]  # what `resolve` reports
    return run


class Resolved:
    """A command line parsed but not run: its handler and values (for tests and checks)."""

    def __init__(self, handler: Handler, args: argparse.Namespace) -> None:
        self.handler, self.args = handler, args


def resolve(app: click.Group, argv: Sequence[str]) -> Resolved:
    """Parse `argv` down to the command it names, without running anything; a usage error
    raises click.UsageError as a run would."""
    ctx = app.make_context("backorder", list(argv), resilient_parsing=False)
    command: click.Command = app
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        _, found, rest = command.resolve_command(ctx, rest)
        assert found is not None
        ctx = found.make_context(found.name, rest, parent=ctx)
        command = found
    handler = getattr(command.callback, "handler", None)
    if handler is None:
        raise click.UsageError(f"{ctx.command_path} needs a command", ctx)
    return Resolved(handler, argparse.Namespace(**{**_parents(ctx), **ctx.params}))


def _parents(ctx: click.Context) -> dict[str, Any]:
    """The values of the groups above the command (`exceptions --site S show 4`), the nearest
    winning, without the root's `--config`."""
    values: dict[str, Any] = {}
    chain = []
    parent = ctx.parent
    while parent is not None and parent.parent is not None:
        chain.append(parent)
        parent = parent.parent
    for level in reversed(chain):
        values.update(level.params)
    return values


def root(help: str, epilog: str, commands: Sequence[click.Command]) -> click.Group:
    """`backorder` and its commands."""
    app = click.Group(
        "backorder",
        help=help,
        epilog=epilog,
        params=[
            click.Option(
                ["--config"],
                type=click.Path(path_type=Path),
                help="TOML settings file (default config/backorder.toml)",
            )
        ],
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    for cmd in commands:
        app.add_command(cmd)
    return app
