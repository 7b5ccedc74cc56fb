"""The electrical model of DESIGN §3: line currents on every fuse from charger currents and meters.

Loads are summed per fuse in *components*: on TN the components are the lines themselves; on IT they
are the branch currents between line pairs (b12, b23, b31) and a fuse's line currents are the phasor
sums at unity power factor:

    I_L1 = sqrt(b12² + b31² + b12·b31)
    I_L2 = sqrt(b12² + b23² + b12·b23)
    I_L3 = sqrt(b23² + b31² + b23·b31)

A car on two IT lines puts its current on that pair's branch; a three-phase car puts I/√3 on each
branch (line current I). The "naive" IT model, kept for comparison only, adds every car's line currents
as on TN; it never allows more than the exact model because sqrt(a² + b² + ab) <= a + b.

Base (non-EV) load is in line amps and adds to the EV line current on top: measured minus the EV line
current computed from the chargers' measured currents where a meter sits, configured `base_load_a`
(plus the base of the child fuses) where none does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.allocation.compiled import BITS, BoolArray, CompiledSite, FloatArray, IntArray
from controller.allocation.model import Meter

SQRT3 = math.sqrt(3.0)
# The two branches (b12 = 0, b23 = 1, b31 = 2) that meet in each line L1, L2, L3.
ADJACENT_BRANCHES: tuple[tuple[int, int], ...] = ((0, 2), (0, 1), (1, 2))


@dataclass(frozen=True, slots=True)
class LineModel:
    """How component sums become line currents: `phasor` on IT (exact), plain sums otherwise."""

    phasor: bool
    # coefficients[mask] = component load per amp of a car active on the lines of `mask`.
    coefficients: FloatArray


def line_model(site: CompiledSite, *, naive: bool = False) -> LineModel:
    if not site.it or naive:
        return LineModel(phasor=False, coefficients=BITS.astype(np.float64))
    table = np.zeros((8, 3))
    table[0b011] = (1.0, 0.0, 0.0)  # L1-L2 -> b12
    table[0b110] = (0.0, 1.0, 0.0)  # L2-L3 -> b23
    table[0b101] = (0.0, 0.0, 1.0)  # L3-L1 -> b31
    table[0b111] = 1.0 / SQRT3
    return LineModel(phasor=True, coefficients=table)


def line_currents(components: FloatArray, phasor: bool) -> FloatArray:
    """Line currents (..., 3) from component sums (..., 3)."""
    if not phasor:
        return components
    b12, b23, b31 = components[..., 0], components[..., 1], components[..., 2]
    return np.sqrt(
        np.stack(
            [
                b12 * b12 + b31 * b31 + b12 * b31,
                b12 * b12 + b23 * b23 + b12 * b23,
                b23 * b23 + b31 * b31 + b23 * b31,
            ],
            axis=-1,
        )
    )


def fuse_components(site: CompiledSite, per_charger: FloatArray) -> FloatArray:
    """Sum per-charger component loads (n, 3) over every fuse on each charger's path -> (F, 3)."""
    out = np.empty((site.n_fuses, 3))
    values = per_charger.take(site.inc_charger, axis=0)
    for k in range(3):
        out[:, k] = np.bincount(site.inc_fuse, weights=values[:, k], minlength=site.n_fuses)
    return out


def load_components(model: LineModel, masks: IntArray, current_a: FloatArray) -> FloatArray:
    """Per-charger component loads (n, 3) of currents `current_a` drawn on the lines in `masks`."""
    return model.coefficients[masks] * current_a[:, None]


def measured_ev_components(site: CompiledSite) -> FloatArray:
    """What the chargers draw now, in the exact model's components, erring low (0 where unknown).

    A low EV estimate makes the base load (measured minus EV) high, the side that leaves less headroom.
    On IT a car's current is the smallest of its lines' readings: a pair or three-phase car draws the same
    current on each of its lines, and a spread means part of it is not that car.
    """
    measured = np.where(site.online[:, None], np.nan_to_num(site.drawing_a, nan=0.0), 0.0)
    if not site.it:
        return measured
    current = np.where(BITS[site.active], measured, np.inf).min(axis=1, initial=np.inf)
    model = line_model(site)
    return load_components(model, site.active, current)


@dataclass(frozen=True, slots=True)
class BaseLoad:
    """Base load per fuse and line (F, 3), and why it cannot be trusted (stale or unusable meter)."""

    line_a: FloatArray
    failsafe: str | None


def base_load(site: CompiledSite, meters: Sequence[Meter]) -> BaseLoad:
    exact = line_model(site)
    ev_now = line_currents(fuse_components(site, measured_ev_components(site)), exact.phasor)
    fuse_index = {fid: i for i, fid in enumerate(site.fuse_ids)}
    measured = np.full((site.n_fuses, 3), np.nan)
    metered = np.zeros(site.n_fuses, dtype=bool)
    problems: list[str] = []
    stale_after_s = site.policy.meter_stale_after_s
    for meter in meters:
        f = fuse_index[meter.fuse]
        metered[f] = True
        if meter.age_s is None:
            problems.append(f"meter on fuse {meter.fuse!r} has not been read")
        elif meter.age_s > stale_after_s:
            problems.append(
                f"meter on fuse {meter.fuse!r} is stale ({meter.age_s:g} s > {stale_after_s:g} s)"
            )
        if meter.base_a is not None:
            held = np.array([np.nan if v is None else v for v in meter.base_a])
            if np.isnan(held).any():
                problems.append(f"meter on fuse {meter.fuse!r} has an incomplete held base load")
                held = np.where(np.isnan(held), site.limit_a[f], held)
            measured[f] = np.maximum(0.0, held)
            continue
        reading = np.array([np.nan if v is None else v for v in meter.currents_a])
        if site.it and np.nanmax(np.nan_to_num(reading, nan=0.0)) > 0:
            # 3-wire meters (Aidon) report the line they do not measure as 0 or leave it out; on IT a
            # zero next to a live line is read as unknown, never as 0 A.
            reading[reading == 0] = np.nan
        base = np.maximum(0.0, reading - ev_now[f])
        unknown = np.isnan(base)
        if site.it and unknown.sum() == 1:
            # Kirchhoff on the 3-wire base load: |I_x| <= |I_y| + |I_z|.
            base[unknown] = base[~unknown].sum()
        elif unknown.any():
            missing = ", ".join(line for line, u in zip(("L1", "L2", "L3"), unknown, strict=True) if u)
            problems.append(f"meter on fuse {meter.fuse!r} does not report {missing}")
            # Nothing bounds the line: assume it is at its rating.
            base[unknown] = site.limit_a[f]
        measured[f] = base
    return BaseLoad(line_a=_tree_base(site, measured, metered), failsafe="; ".join(problems) or None)


def configured_base(site: CompiledSite) -> FloatArray:
    """Base load from configuration alone (no meter anywhere)."""
    return _tree_base(site, np.zeros((site.n_fuses, 3)), np.zeros(site.n_fuses, dtype=bool))


def _tree_base(site: CompiledSite, measured: FloatArray, metered: BoolArray) -> FloatArray:
    # A metered fuse carries what its meter says; any other carries its own base_load_a plus what its
    # children carry (a child's load flows through its parent).
    base = np.repeat(site.base_load_a[:, None], 3, axis=1)
    for d in range(int(site.depth.max()), -1, -1):
        level = np.flatnonzero(site.depth == d)
        base[level] = np.where(metered[level, None], measured[level], base[level])
        child = level[site.parent[level] >= 0]
        np.add.at(base, site.parent[child], base[child])
    return base
