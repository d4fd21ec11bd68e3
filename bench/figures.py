"""The figures a reader compares: ours, the baseline, their ratio, the target and whether it is
met, derived from the raw result (so the JSON and the printed table always agree).

A ratio says how many times worse ours is: ours / baseline for times, CPU, memory and events,
baseline / ours for rates. A target is either on the ratio ("<= 1.5x") or on our value alone
("< 0.5 s"); figures without one are shown for context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PROCESSES = ("temporal", "worker", "postgres", "bench")
"""CPU groups: the Temporal server, the scenario's worker, PostgreSQL (postmaster and backends),
and the bench itself (its client calls, polls and the sandbox gateway it serves)."""
HISTORY_BYTES_LIMIT = 6_000


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    ours: float
    baseline: float | None
    ratio: float | None
    target: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(ours: float, baseline: float | None, higher_is_better: bool = False) -> float | None:
    if baseline is None or ours == 0 or baseline == 0:
        return None
    return baseline / ours if higher_is_better else ours / baseline


def on_ratio(
    name: str, unit: str, ours: float, baseline: float, limit: float, higher_is_better: bool = False
) -> Figure:
    ratio = _ratio(ours, baseline, higher_is_better)
    met = None if ratio is None else ratio <= limit
    return Figure(name, unit, ours, baseline, ratio, f"<= {limit:g}x", met)


def on_value(
    name: str, unit: str, ours: float, baseline: float | None, limit: float, strict: bool
) -> Figure:
    met = ours < limit if strict else ours <= limit
    target = f"{'<' if strict else '<='} {limit:g} {unit}"
    return Figure(name, unit, ours, baseline, _ratio(ours, baseline), target, met)


def context(name: str, unit: str, ours: float, baseline: float | None) -> Figure:
    return Figure(name, unit, ours, baseline, _ratio(ours, baseline), "", None)


def for_size(size: dict[str, Any]) -> list[Figure]:
    o, b = size["ours"], size["baseline"]
    base_fan = b["fanout"]["closed"]["seconds"]
    figures = [
        on_ratio(
            "fan-out: receipt -> last order closed",
            "s",
            o["fanout"]["closed"]["seconds"],
            base_fan,
            1.5,
        ),
        on_ratio(
            "fan-out: receipt -> last ready shipment",
            "s",
            o["fanout"]["ready"]["seconds"],
            base_fan,
            1.2,
        ),
        on_ratio(
            "intake: start -> accepted and waiting",
            "orders/s",
            o["intake"]["rate"],
            b["intake"]["rate"],
            1.5,
            higher_is_better=True,
        ),
    ]
    for key, label in (("latency_default", "default"), ("latency_window0", "0")):
        lat = o[key]
        for p in ("p50", "p90", "p99", "max"):
            name = f"latency {p}, batch window {label}"
            if key == "latency_default" and p == "p99":
                figures.append(on_value(name, "s", lat[p], b["latency"][p], 0.5, strict=True))
            else:
                figures.append(context(name, "s", lat[p], b["latency"][p]))
    ev_o, ev_b = o["events"], b["events"]
    figures += [
        on_value(
            "history events: acceptance (max)",
            "events",
            ev_o["acceptance"]["max"],
            ev_b["acceptance"]["max"],
            15,
            strict=False,
        ),
        on_value(
            "history events: release (max)",
            "events",
            ev_o["release"]["max"],
            ev_b["release"]["max"],
            12,
            strict=False,
        ),
        context(
            "history events: whole life (mean)",
            "events",
            ev_o["total"]["mean"],
            ev_b["total"]["mean"],
        ),
        on_value(
            "history bytes: whole life (max)",
            "bytes",
            ev_o["bytes"]["max"],
            ev_b["bytes"]["max"],
            HISTORY_BYTES_LIMIT,
            strict=True,
        ),
    ]
    for scenario in ("intake", "fanout"):
        cpu_o, cpu_b = o[scenario]["cpu_ms_per_order"], b[scenario]["cpu_ms_per_order"]
        for proc in PROCESSES:
            figures.append(
                context(
                    f"CPU per order, {scenario}: {proc}",
                    "ms",
                    cpu_o.get(proc, 0.0),
                    cpu_b.get(proc, 0.0),
                )
            )
    return figures


def general(result: dict[str, Any]) -> list[Figure]:
    figures = []
    memory = result.get("memory")
    if memory:
        o, b = memory["ours"], memory["baseline"]
        figures.append(
            on_ratio(
                f"worker memory per cached workflow ({o['cached']} cached)",
                "KB",
                o["bytes_per_workflow"] / 1024,
                b["bytes_per_workflow"] / 1024,
                2.0,
            )
        )
    planner = result.get("planner")
    if planner:
        for row in planner["rows"]:
            decide = row["decide"]
            name = f"planner {row['lines']:,} lines: decide (sort {row['sort']:.3f} s)"
            if row["lines"] == 100_000:
                figures.append(
                    Figure(
                        name, "s", decide, row["sort"], decide / row["sort"], "< 1 s", decide < 1
                    )
                )
            else:
                figures.append(
                    Figure(name, "s", decide, row["sort"], decide / row["sort"], "", None)
                )
    return figures


def all_figures(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out = {key: [f.as_dict() for f in for_size(size)] for key, size in result["sizes"].items()}
    out["general"] = [f.as_dict() for f in general(result)]
    return out
