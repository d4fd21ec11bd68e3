"""`python -m bench` (`make bench`): the service against a trivial Temporal baseline, measured in
the same run on servers of its own (free ports, a temp dir), with the planner's figures.

Prints a table per size N (figure | ours | baseline | ratio | target | met?), and writes
`<out>/bench-<timestamp>.json` (every figure and the raw readings) and `.html` (the chart).
See bench/README.md for how each figure is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from bench import chart
from bench.figures import all_figures
from bench.run import Options, run

T = TypeVar("T")
TROUBLE = re.compile(r"^\w+(Error|Exception)\b|Nondeterminism| ERROR ")
"""A worker log line that says why: an exception's last line, a nondeterminism error."""
DIGITS = {"s": 3, "orders/s": 1, "events": 1, "bytes": 0, "ms": 2, "KB": 1}


def parse(argv: list[str] | None) -> tuple[Options, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="200,1000", help="N values, comma separated")
    parser.add_argument("--quick", action="store_true", help="no 1M-line planner case, M=500")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--skip-planner", action="store_true")
    parser.add_argument("--memory-orders", type=int, help="M sleeping orders (default 2000)")
    parser.add_argument("--receipts", type=int, default=30, help="latency samples per run")
    parser.add_argument("--events-sample", type=int, default=20, help="histories read per N")
    args = parser.parse_args(argv)
    sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    if not sizes or min(sizes) < 2:
        parser.error("--sizes: integers of at least 2")
    memory = args.memory_orders or (500 if args.quick else 2000)
    options = Options(
        sizes=sizes,
        quick=args.quick,
        planner=not args.skip_planner,
        memory_orders=memory,
        receipts=args.receipts,
        events_sample=args.events_sample,
        workdir=Path(tempfile.mkdtemp(prefix="backorder-bench-")),
    )
    return options, args.out


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = DIGITS.get(unit, 2)
    return f"{value:,.{digits}f}"


def table(title: str, figures: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("figure")
    t.add_column("ours", justify="right")
    t.add_column("baseline", justify="right")
    t.add_column("ratio", justify="right")
    t.add_column("target")
    t.add_column("met?")
    for f in figures:
        unit = f["unit"]
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[f["met"]]
        t.add_row(
            f"{f['name']} ({unit})",
            _value(f["ours"], unit),
            _value(f["baseline"], unit),
            "-" if f["ratio"] is None else f"{f['ratio']:.2f}x",
            f["target"],
            met,
        )
    return t


def report(console: Console, result: dict[str, Any]) -> None:
    figures = result["figures"]
    meta = result["meta"]
    for key, size in result["sizes"].items():
        console.print(
            table(
                f"N = {int(key):,}: {key} orders per scenario; latency: {size['receipts']} "
                f"one-unit receipts with {key} waiting (baseline: signal -> completed); "
                "ratio = ours/baseline (rates: baseline/ours)",
                figures[key],
            )
        )
    console.print(table("memory and planner", figures["general"]))
    memory = result.get("memory")
    if memory:
        console.print(f"memory: {memory['ours']['cache_note']}. {memory['note']}".rstrip())
    console.print(f"{meta['cpus']} CPUs; {meta['postgres']}; {meta['temporal_server']}")


async def _until_stopped(work: Coroutine[Any, Any, T]) -> T:
    """SIGTERM stops the run like Ctrl-C does: the main task is cancelled, so every server and
    worker is stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


def troubles(workdir: Path, per_log: int = 3) -> list[str]:
    """The last few error lines of each worker's log: why a scenario never finished (a
    nondeterminism error, a failing activity) without opening the files."""
    lines = []
    for log in sorted(workdir.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()
        seen = Counter(ln[:300] for ln in text if TROUBLE.search(ln))
        lines += [f"{log.name}: {ln} ({n}x)" for ln, n in list(seen.items())[-per_log:]]
    return lines


def main(argv: list[str] | None = None) -> int:
    options, out = parse(argv)
    console = Console()
    if not console.is_terminal:  # a log file or pipe: wide enough for one line per figure
        console = Console(width=132)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def say(text: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

    try:
        result = asyncio.run(_until_stopped(run(options, say)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        shutil.rmtree(options.workdir, ignore_errors=True)
        console.print("interrupted; every process the bench started is stopped")
        return 130
    except Exception:
        console.print(f"[red]the bench failed[/]; logs kept in {options.workdir}")
        for line in troubles(options.workdir):
            console.print(line, markup=False, highlight=False)
        raise
    shutil.rmtree(options.workdir, ignore_errors=True)
    result["figures"] = all_figures(result)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    html_path = chart.write(result, out / f"bench-{stamp}.html")
    report(console, result)
    console.print(f"wrote {json_path} and {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
