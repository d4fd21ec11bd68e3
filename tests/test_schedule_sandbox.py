"""The schedule runs inside the Temporal workflow sandbox and is replayed: it may import only
stdlib, pydantic and `domain`, and must never read a clock."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import domain.schedule

ALLOWED_ROOTS = {"pydantic", "pydantic_core", "domain", "__future__", "babel"}
"""pydantic_core: its errors; babel: the ISO 4217 table (CLDR data read once, no clock or I/O
after import)."""
CLOCKS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def sources(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    origin = Path(spec.origin)
    return sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def domain_closure() -> dict[str, set[str]]:
    """Every module `domain.schedule` reaches inside `domain`, with what each imports."""
    seen: dict[str, set[str]] = {}
    todo = [domain.schedule.__name__]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = set().union(*(imported(path) for path in sources(module)))
        todo += [name for name in seen[module] if name.split(".")[0] == "domain"]
    return seen


def test_the_schedule_imports_only_stdlib_pydantic_and_domain() -> None:
    modules = domain_closure()
    assert {"domain.schedule", "domain.policy", "domain.order"} <= modules.keys()
    outside = {
        (module, name)
        for module, names in modules.items()
        for name in names
        if name.split(".")[0] not in ALLOWED_ROOTS | sys.stdlib_module_names
    }
    assert outside == set()


def test_the_schedule_never_reads_a_clock() -> None:
    calls = {
        (path.name, node.func.attr)
        for path in sources(domain.schedule.__name__)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCKS
    }
    assert calls == set()
    assert not any("random" in imported(path) for path in sources(domain.schedule.__name__))
