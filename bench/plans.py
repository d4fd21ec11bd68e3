"""The release planner's figures (`bench.planner`) as JSON, computed in a process of its own.

`python -m bench.plans [--quick]` prints one JSON object: per size, the rows `bench.planner`
prints (the same functions, seed and repeats), so the service bench can show and store them.
A process of its own: the 1M-line merchant takes gigabytes and freezes the garbage collector,
which must not touch the bench's measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import sys
from pathlib import Path
from typing import Any

from bench import planner

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1800.0
"""Seconds the planner may take (the 1M-line case takes about a minute here)."""
TARGET_SECONDS = 1.0
TARGET_LINES = 100_000
"""The planner's own target: decide < 1 s at 100k lines."""


def figures(quick: bool) -> dict[str, Any]:
    sizes = planner.SIZES[:2] if quick else planner.SIZES
    rows = []
    for lines in sizes:
        m = planner.built(lines)
        row = planner.measure(
            m,
            planner.POLICY,
            repeat=3 if lines <= 100_000 else 1,
            models=lines <= planner.MODELS_UP_TO,
        )
        rows.append(
            {
                **dataclasses.asdict(row),
                "size": lines,
                "coverage": m.coverage,
                "decide_over_sort": row.decide / row.sort,
                "models_per_order_us": (
                    None if row.models is None else row.models / row.released * 1e6
                ),
            }
        )
        del m
        gc.unfreeze()
    return {
        "skus": planner.SKUS,
        "locations": planner.LOCATIONS,
        "seed": planner.SEED,
        "target": f"decide < {TARGET_SECONDS:g} s at {TARGET_LINES:,} lines",
        "rows": rows,
    }


async def run(quick: bool) -> dict[str, Any]:
    """`figures` in a child process."""
    argv = [sys.executable, "-m", "bench.plans", *(["--quick"] if quick else [])]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), LIMIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.plans exited {proc.returncode}: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1M-line case")
    print(json.dumps(figures(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
