"""The HTML chart: per size, the latency distribution and the fan-out over time, ours beside
the baseline. One self-contained file (plotly.js inlined): it opens with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

OURS = "#1f77b4"
OURS_ZERO = "#2ca02c"
READY = "#9467bd"
BASELINE = "#7f7f7f"


def write(result: dict[str, Any], path: Path) -> Path:
    sizes = list(result["sizes"].values())
    titles = []
    for size in sizes:
        n, waiting = size["n"], size["ours"]["latency_default"]["waiting_before"]
        titles += [
            f"N={n}: receipt -> ready shipment, one receipt at a time ({waiting} waiting)",
            f"N={n}: fan-out of one receipt to {n} orders",
        ]
    fig = make_subplots(
        rows=len(sizes),
        cols=2,
        subplot_titles=titles,
        horizontal_spacing=0.08,
        vertical_spacing=0.12 if len(sizes) > 1 else 0.1,
    )
    for row, size in enumerate(sizes, start=1):
        _latency(fig, row, size)
        _fanout(fig, row, size)
        fig.update_yaxes(title_text="seconds", row=row, col=1)
        fig.update_xaxes(
            title_text="seconds since receipt (ours) / first signal (baseline)", row=row, col=2
        )
        fig.update_yaxes(title_text="orders", row=row, col=2)
    meta = result["meta"]
    fig.update_layout(
        title=(
            f"backorder bench {meta['started_at']}: ours vs a trivial Temporal workflow "
            f"({meta['cpus']} CPUs, {meta['temporal_server']})"
        ),
        height=480 * len(sizes),
        template="plotly_white",
        legend={"orientation": "h", "y": -0.05},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def _latency(fig: go.Figure, row: int, size: dict[str, Any]) -> None:
    o, b = size["ours"], size["baseline"]
    for name, samples, color in (
        (
            f"ours, default batch window ({o['latency_default']['batch_window_seconds']:g} s)",
            o["latency_default"]["samples"],
            OURS,
        ),
        ("ours, batch window 0", o["latency_window0"]["samples"], OURS_ZERO),
        ("baseline: signal -> completed", b["latency"]["samples"], BASELINE),
    ):
        fig.add_trace(
            go.Box(
                y=samples,
                name=name,
                marker_color=color,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                legendgroup=name,
                showlegend=row == 1,
            ),
            row=row,
            col=1,
        )


def _fanout(fig: go.Figure, row: int, size: dict[str, Any]) -> None:
    o, b = size["ours"]["fanout"], size["baseline"]["fanout"]
    for name, series, color, dash in (
        ("ours: orders closed", o["closed"]["series"], OURS, "solid"),
        ("ours: shipments ready", o["ready"]["series"], READY, "dot"),
        ("baseline: workflows closed", b["closed"]["series"], BASELINE, "solid"),
    ):
        xs = [0.0] + [x for x, _ in series]
        ys = [0] + [y for _, y in series]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines",
                line={"shape": "hv", "color": color, "dash": dash},
                legendgroup=name,
                showlegend=row == 1,
            ),
            row=row,
            col=2,
        )
