"""Tables and progress bars on the terminal and through a pipe: Rich where a person reads,
plain text (or nothing, for progress) where a program or a file does."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_WIDTH = 10_000
"""Wide enough that no row of a plain-text table is wrapped."""


def show(*renderables: RenderableType) -> None:
    """A terminal gets Rich's own console (its width, its colours); anything else plain text."""
    if sys.stdout.isatty():
        Console(markup=False, emoji=False, highlight=False).print(*renderables)
    else:
        print(plain_text(*renderables))


def plain_text(*renderables: RenderableType) -> str:
    """No ANSI codes, rows as wide as they need (no id wrapped or cut) and no padding after
    the last column. Markup and emoji codes are off: an id like `[x]` or `:a:` prints as is."""
    console = Console(
        width=PLAIN_WIDTH, color_system=None, markup=False, emoji=False, highlight=False
    )
    with console.capture() as captured:
        console.print(*renderables)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


Advance = Callable[[int], None]
"""Tells a progress bar that this many more items were sent."""


@contextmanager
def progress_bar(what: str, total: int) -> Iterator[Advance]:
    """A progress bar on standard error while `total` items are sent, when standard error is a
    terminal; when it is not (a pipe, a file, a CI log), nothing at all, not one ANSI code.
    Standard output stays free for the result. Yields the function that advances the bar."""
    if total <= 0 or not sys.stderr.isatty():
        yield lambda n: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)
