"""Scores of a run, computed from its recording (ground truth), and a JSON report and PNG plots.

- overload: per fuse and line, ampere-seconds above the fuse's rated limit and time above it (rows
  are held for the row interval), the peak and its ratio to the limit;
- trips: fuses that opened, when, with the line currents that opened them;
- utilization: per fuse, the mean of (highest line current / limit) over the rows in which some car
  below the fuse wanted energy - how much of the available capacity was put to use when it mattered;
- fairness: Jain's index (sum x)^2 / (n sum x^2) among cars that left (or were still plugged in at
  the end) with unmet demand, of energy received and of energy per plugged-in hour;
- waits: longest time a car was plugged in, wanting energy, and not charging; longest time a car
  waited for a free charger;
- starts/stops per car; energy unmet at departure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.recording import Recording, VisitRecord

UNMET_EPSILON_WH = 1.0


@dataclass(frozen=True, slots=True)
class LineOverload:
    fuse: str
    line: str
    limit_a: float
    overload_as: float
    time_above_s: float
    peak_a: float
    peak_ratio: float
    episodes: int  # separate spells above the limit
    longest_above_s: float  # the longest of them: how long the line stayed over at a stretch


def overloads(rec: Recording) -> list[LineOverload]:
    """Every fuse line, with its overload ampere-seconds (zero when it stayed within the limit)."""
    out = []
    dt = rec.row_interval_s
    for i, fuse in enumerate(rec.fuse_ids):
        limit = float(rec.fuse_limits_a[i])
        for k, line in enumerate(("L1", "L2", "L3")):
            series = rec.fuse_a[:, i, k].astype(np.float64)
            excess = np.maximum(series - limit, 0.0)
            peak = float(series.max()) if len(series) else 0.0
            above = np.concatenate(([0], (series > limit).astype(np.int8), [0]))
            edges = np.diff(above)
            spells = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
            out.append(
                LineOverload(
                    fuse=fuse,
                    line=line,
                    limit_a=limit,
                    overload_as=float(excess.sum() * dt),
                    time_above_s=float(np.count_nonzero(series > limit) * dt),
                    peak_a=peak,
                    peak_ratio=peak / limit,
                    episodes=len(spells),
                    longest_above_s=float(spells.max() * dt) if len(spells) else 0.0,
                )
            )
    return out


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index: 1 for equal shares, 1/n when one gets everything; None for no values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return None
    if np.any(x < 0):
        raise ValueError("Jain's index needs non-negative values")
    square_sum = float((x * x).sum())
    if square_sum == 0:
        return 1.0
    return float(x.sum() ** 2 / (len(x) * square_sum))


def utilization(rec: Recording) -> dict[str, float | None]:
    """Per fuse, mean used fraction of its limit over rows with demand below it (None: never)."""
    out: dict[str, float | None] = {}
    for i, fuse in enumerate(rec.fuse_ids):
        below = [c for c, path in enumerate(rec.connector_fuse_paths) if i in path]
        if not below or rec.rows == 0:
            out[fuse] = None
            continue
        demand = rec.conn_wants[:, below].any(axis=1)
        if not demand.any():
            out[fuse] = None
            continue
        used = rec.fuse_a[demand, i, :].max(axis=1) / rec.fuse_limits_a[i]
        out[fuse] = float(np.mean(np.minimum(used, 1.0)))
    return out


def report(rec: Recording) -> dict[str, Any]:
    """Everything above as one JSON-serialisable dict (`"version": 1`)."""
    lines = overloads(rec)
    visits = rec.visits
    plugged = [v for v in visits if v.plug_s is not None]
    unmet = [v for v in plugged if v.unmet_wh > UNMET_EPSILON_WH]
    end_s = float(rec.t_s[-1]) if rec.rows else 0.0

    def hours_plugged(v: VisitRecord) -> float:
        stop = v.departure_s if v.departed else end_s
        plug = v.plug_s if v.plug_s is not None else stop
        return max(1e-9, (stop - plug) / 3600.0)

    # A car still waiting when the run ended has waited until the end, not until its departure.
    queue_waits = [
        (v.plug_s if v.plug_s is not None else min(v.departure_s, end_s)) - v.arrival_s for v in visits
    ]
    return {
        "version": 1,
        "scenario": rec.scenario,
        "duration_s": end_s,
        "row_interval_s": rec.row_interval_s,
        "overload": {
            "total_as": sum(x.overload_as for x in lines),
            "lines": [asdict(x) for x in lines if x.overload_as > 0 or x.peak_ratio > 1.0],
        },
        "trips": [
            {"t_s": t.t_s, "fuse": t.fuse_id, "line_currents_a": list(t.line_currents_a)} for t in rec.trips
        ],
        "utilization": utilization(rec),
        "fairness": {
            "cars_with_unmet_demand": len(unmet),
            "jain_energy": jain_index([v.delivered_wh for v in unmet]),
            "jain_energy_per_hour": jain_index([v.delivered_wh / hours_plugged(v) for v in unmet]),
        },
        "waits": {
            "longest_plugged_not_charging_s": max((v.longest_wait_s for v in visits), default=0.0),
            "longest_for_a_charger_s": max(queue_waits, default=0.0),
            "max_queue": int(rec.queue_len.max()) if rec.rows else 0,
        },
        "starts_stops": {
            "max_starts": max((v.starts for v in plugged), default=0),
            "max_stops": max((v.stops for v in plugged), default=0),
            "mean_starts": float(np.mean([v.starts for v in plugged])) if plugged else 0.0,
        },
        "energy": {
            "delivered_wh": sum(v.delivered_wh for v in visits),
            "unmet_at_departure_wh": sum(v.unmet_wh for v in visits if v.departed),
            "cars": len(visits),
            "cars_never_plugged": sum(1 for v in visits if v.plug_s is None),
            "cars_left_unmet": sum(1 for v in visits if v.departed and v.unmet_wh > UNMET_EPSILON_WH),
        },
        "visits": [asdict(v) for v in visits],
    }


def write_report(rec: Recording, path: Path) -> dict[str, Any]:
    data = report(rec)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return data


def plot(rec: Recording, path: Path, fuses: Sequence[str] | None = None) -> None:
    """PNG: line currents against limits, current per connector, queue length - over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if fuses is None:
        roots = [f for i, f in enumerate(rec.fuse_ids) if rec.fuse_parents[i] < 0]
        peaks = sorted(
            (
                (float((rec.fuse_a[:, i, :].max() if rec.rows else 0) / rec.fuse_limits_a[i]), f)
                for i, f in enumerate(rec.fuse_ids)
                if f not in roots
            ),
            reverse=True,
        )
        fuses = roots + [f for _, f in peaks[: max(0, 3 - len(roots))]]
    hours = rec.t_s / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    ax = axes[0]
    colors = {"L1": "tab:brown", "L2": "tab:gray", "L3": "tab:blue"}
    for n, fuse in enumerate(fuses):
        i = rec.fuse_ids.index(fuse)
        style = ["-", "--", ":"][n % 3]
        for k, line in enumerate(("L1", "L2", "L3")):
            ax.plot(hours, rec.fuse_a[:, i, k], style, color=colors[line], lw=0.8, label=f"{fuse} {line}")
        ax.axhline(rec.fuse_limits_a[i], color="red", ls=style, lw=1.0, label=f"{fuse} limit")
    for trip in rec.trips:
        ax.axvline(trip.t_s / 3600.0, color="black", lw=1.5)
    ax.set_ylabel("line current (A)")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.set_title(f"{rec.scenario}: fuse line currents against limits")
    ax = axes[1]
    for c in range(len(rec.connector_ids)):
        ax.plot(hours, rec.conn_current_a[:, c], lw=0.6)
    ax.set_ylabel("current per car (A)")
    ax = axes[2]
    ax.step(hours, rec.queue_len, where="post", label="waiting for a charger")
    ax.step(hours, rec.waiting_len, where="post", label="plugged in, wanting energy, not charging")
    ax.set_ylabel("cars")
    ax.set_xlabel("hours from start")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
