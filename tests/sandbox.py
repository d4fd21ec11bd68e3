"""Checks that modules used inside workflows import nothing the workflow sandbox refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
IO_PACKAGES = frozenset({"temporalio", "psycopg", "psycopg_pool", "httpx", "config"})


def io_packages_imported_by(*modules: str, also: frozenset[str] = frozenset()) -> list[str]:
    """The I/O packages a fresh interpreter has loaded after importing `modules`."""
    watched = sorted(IO_PACKAGES | also)
    code = (
        f"import sys, {', '.join(modules)}; "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({watched!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout.split()
