"""Tables on the terminal and through a pipe: Rich's console where a person reads, plain text
where a program or a file does."""

from __future__ import annotations

import sys

from rich.console import Console, RenderableType

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
