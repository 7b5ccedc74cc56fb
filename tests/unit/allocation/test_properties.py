"""Properties of the allocation over random sites (1-300 chargers, random fuse trees, IT and TN).

Each property recomputes what it checks with `reference.Reference` (plain loops, complex phasors), not
with the allocator's own arrays. Sites are drawn from a hypothesis-chosen seed and shape so that a
300-charger site costs one draw; `HYPOTHESIS_PROFILE=thorough` runs 2000 examples of each.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.allocation import Allocation, SiteSnapshot, allocate
from controller.allocation.model import Charger, Fuse, Grid, Policy, Vehicle
from drivers.contracts import Line
from tests.unit.allocation.reference import NOW, Reference, random_site

# The thorough profile sets its own count; the default run stays short for CI.
EXAMPLES = settings().max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 60
LINE_TOLERANCE_A = 1e-6
STEP_A = 0.5


@st.composite
def sites(draw: st.DrawFn, *, smoothing: bool) -> SiteSnapshot:
    seed = draw(st.integers(0, 2**32 - 1))
    n_chargers = draw(st.one_of(st.integers(1, 12), st.integers(1, 300)))
    n_fuses = draw(st.integers(1, max(1, min(40, n_chargers))))
    grid = draw(st.sampled_from(["IT", "TN"]))
    tight = draw(st.booleans())
    return random_site(seed, n_chargers, n_fuses, grid, smoothing=smoothing, tight=tight)


def _check_lines_within_limits(snapshot: SiteSnapshot, allocation: Allocation) -> None:
    ref = Reference(snapshot)
    currents = {cid: d.current_a for cid, d in allocation.chargers.items()}
    with_ev = ref.predicted(currents)
    without_ev = ref.predicted({})
    for fid, lines in with_ev.items():
        for line, amps in enumerate(lines):
            # A line already over its limit without any car (base load, offline chargers) gets no car.
            allowed = max(ref.limit(fid), without_ev[fid][line])
            assert amps <= allowed + LINE_TOLERANCE_A, (fid, line, amps, allowed)
        predicted = allocation.fuses[fid].predicted_a
        for ours, theirs in zip(predicted, lines, strict=True):
            assert math.isclose(ours, theirs, abs_tol=1e-6), (fid, predicted, lines)


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=True))
def test_a_predicted_current_never_exceeds_any_fuse_line(snapshot: SiteSnapshot) -> None:
    allocation = allocate(snapshot)
    if Reference(snapshot).meters_usable():
        assert allocation.failsafe is None
        _check_lines_within_limits(snapshot, allocation)
    else:
        assert allocation.failsafe is not None


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=True))
def test_b_every_setpoint_is_zero_or_within_its_bounds(snapshot: SiteSnapshot) -> None:
    allocation = allocate(snapshot)
    ref = Reference(snapshot)
    for c in snapshot.chargers:
        d = allocation.chargers[c.id]
        if allocation.failsafe is not None:
            safe = _lo(snapshot, c) if c.safe_current_a is None else c.safe_current_a
            assert d.current_a == (safe if c.commandable else 0.0)
            continue
        if d.current_a == 0:
            assert d.state != "charging"
            continue
        assert d.state == "charging"
        assert c.vehicle is not None
        assert c.commandable
        assert c.vehicle.connected
        assert c.vehicle.wants_energy
        lo, hi = ref.bounds(c)
        assert lo - 1e-9 <= d.current_a <= hi + 1e-9, (c.id, d, lo, hi)


def _lo(snapshot: SiteSnapshot, c: Charger) -> float:
    return snapshot.policy.min_current_a if c.min_a is None else c.min_a


def _fresh(snapshot: SiteSnapshot) -> bool:
    return Reference(snapshot).meters_usable()


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=False))
def test_c_no_charging_car_could_get_half_an_amp_more(snapshot: SiteSnapshot) -> None:
    allocation = allocate(snapshot)
    if allocation.failsafe is not None:
        return
    ref = Reference(snapshot)
    currents = {cid: d.current_a for cid, d in allocation.chargers.items()}
    loads = ref.fuse_loads(currents)
    for c in snapshot.chargers:
        if allocation.chargers[c.id].state != "charging":
            continue
        _, hi = ref.bounds(c)
        if currents[c.id] + STEP_A > hi:
            continue
        broken = []
        for fid in ref.path(c.fuse):
            load = loads[fid].copy()
            ref.add(load, ref.effective_lines(c), STEP_A)
            lines = ref.line_currents(load)
            broken += [
                (fid, line)
                for line in ref.loaded_lines(c)
                if ref.fixed(fid)[line] + lines[line] > ref.limit(fid) + LINE_TOLERANCE_A
            ]
        assert broken, f"{c.id} at {currents[c.id]:.3f} A (max {hi}) could take {STEP_A} A more"


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=False))
def test_d_max_min_fair(snapshot: SiteSnapshot) -> None:
    """Every charging car below its maximum loads a full line on which no other car has more (weighted)
    current, except cars held at their own minimum."""
    allocation = allocate(snapshot)
    if allocation.failsafe is not None:
        return
    ref = Reference(snapshot)
    currents = {cid: d.current_a for cid, d in allocation.chargers.items()}
    predicted = ref.predicted(currents)
    charging = [c for c in snapshot.chargers if allocation.chargers[c.id].state == "charging"]
    on_line: dict[tuple[str, int], list[Charger]] = {}
    for c in charging:
        for fid in ref.path(c.fuse):
            for line in ref.loaded_lines(c):
                on_line.setdefault((fid, line), []).append(c)
    for c in charging:
        _, hi = ref.bounds(c)
        mine = currents[c.id]
        if mine >= hi - 1e-6:
            continue
        level = mine / c.weight
        ok = False
        for fid in ref.path(c.fuse):
            for line in ref.loaded_lines(c):
                if predicted[fid][line] < ref.limit(fid) - 1e-4:
                    continue
                if all(
                    currents[o.id] / o.weight <= level + 1e-6 or currents[o.id] <= ref.bounds(o)[0] + 1e-9
                    for o in on_line[(fid, line)]
                ):
                    ok = True
        assert ok, f"{c.id} at {mine:.3f} A is below its maximum {hi} without a full line it tops"


@st.composite
def balanced_it_sites(draw: st.DrawFn) -> tuple[SiteSnapshot, float]:
    """IT sites whose cars are spread evenly over the line pairs, with the main fuse binding.

    Returns the snapshot and the most current in total that naive summation would allow.
    """
    per_pair = draw(st.integers(1, 40))
    three_phase = draw(st.integers(0, 40))
    margin = draw(st.sampled_from([0.0, 2.0, 3.0]))
    pairs: list[tuple[Line, ...]] = [("L1", "L2"), ("L2", "L3"), ("L3", "L1")]
    # Every minimum fits with either model, and no car reaches its 32 A maximum with the exact one.
    limit = draw(
        st.floats(
            6.5 * (2 * per_pair + three_phase) + margin,
            27.0 * (math.sqrt(3) * per_pair + three_phase) + margin,
        )
    )
    chargers = [
        Charger(id=f"p{k}-{i}", fuse="main", lines=pair, max_a=32.0, vehicle=Vehicle())
        for k, pair in enumerate(pairs)
        for i in range(per_pair)
    ] + [
        Charger(id=f"t{i}", fuse="main", lines=("L1", "L2", "L3"), max_a=32.0, vehicle=Vehicle())
        for i in range(three_phase)
    ]
    snapshot = SiteSnapshot(
        now=NOW,
        grid=Grid(type="IT"),
        fuses=(Fuse(id="main", limit_a=limit),),
        chargers=tuple(chargers),
        policy=Policy(safety_margin_a=margin, increase_step_a=None, deadband_a=0.0),
    )
    # Naive: each line carries the full current of the 2 * per_pair pair cars and the three-phase cars.
    naive_each = (limit - margin) / (2 * per_pair + three_phase)
    return snapshot, naive_each * len(chargers)


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=True).filter(lambda s: s.grid.type == "IT"))
def test_e_it_allocation_within_exact_phasor_limits(snapshot: SiteSnapshot) -> None:
    allocation = allocate(snapshot)
    if allocation.failsafe is None:
        _check_lines_within_limits(snapshot, allocation)


@settings(max_examples=EXAMPLES)
@given(balanced_it_sites())
def test_e_it_uses_more_than_naive_summation_on_balanced_loads(case: tuple[SiteSnapshot, float]) -> None:
    snapshot, naive_total = case
    exact = allocate(snapshot)
    naive = allocate(snapshot, naive_it=True)
    exact_total = sum(d.current_a for d in exact.chargers.values())
    naive_model_total = sum(d.current_a for d in naive.chargers.values())
    assert all(d.state == "charging" for d in exact.chargers.values())
    assert math.isclose(naive_model_total, naive_total, rel_tol=1e-6)
    # Pair cars gain 2/sqrt(3) (15 %); three-phase cars alone gain nothing, so the gain is diluted.
    per_pair = sum(1 for c in snapshot.chargers if len(c.lines) == 2) // 3
    three_phase = len(snapshot.chargers) - 3 * per_pair
    gain = (2 * per_pair + three_phase) / (math.sqrt(3) * per_pair + three_phase)
    assert exact_total > naive_total * 1.001
    assert math.isclose(exact_total, naive_total * gain, rel_tol=1e-6)
    _check_lines_within_limits(snapshot, exact)


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=True))
def test_predict_fuse_currents_agrees_with_the_allocation(snapshot: SiteSnapshot) -> None:
    from controller.allocation import predict_fuse_currents

    allocation = allocate(snapshot)
    predicted = predict_fuse_currents(snapshot, {cid: d.current_a for cid, d in allocation.chargers.items()})
    for fid, lines in predicted.items():
        for a, b in zip(lines, allocation.fuses[fid].predicted_a, strict=True):
            assert math.isclose(a, b, abs_tol=1e-9)


@settings(max_examples=max(20, EXAMPLES // 4))
@given(sites(smoothing=True), st.floats(30.001, 1e6))
def test_a_stale_meter_puts_every_commandable_charger_on_its_safe_current(
    snapshot: SiteSnapshot, age_s: float
) -> None:
    from dataclasses import replace

    from controller.allocation.model import Meter

    stale = Meter(fuse=snapshot.fuses[0].id, currents_a=(1.0, 1.0, 1.0), age_s=age_s)
    others = tuple(m for m in snapshot.meters if m.fuse != stale.fuse)
    allocation = allocate(replace(snapshot, meters=(stale, *others)))
    assert allocation.failsafe is not None
    for c in snapshot.chargers:
        d = allocation.chargers[c.id]
        safe = _lo(snapshot, c) if c.safe_current_a is None else c.safe_current_a
        assert d.current_a == (safe if c.commandable else 0.0)
        assert d.limited_by == ("failsafe" if c.commandable else str(c.drive))


@settings(max_examples=EXAMPLES)
@given(sites(smoothing=False))
def test_limited_by_tells_the_truth(snapshot: SiteSnapshot) -> None:
    """A named fuse line is full and loaded by the car (or, for a paused car, its minimum does not fit
    there even alone); a named maximum is the car's current."""
    allocation = allocate(snapshot)
    if allocation.failsafe is not None:
        return
    ref = Reference(snapshot)
    currents = {cid: d.current_a for cid, d in allocation.chargers.items()}
    predicted = ref.predicted(currents)
    without_ev = ref.fuse_loads({})
    for c in snapshot.chargers:
        d = allocation.chargers[c.id]
        reason = d.limited_by or ""
        if reason.startswith("fuse:"):
            _, fid, line_name = reason.split(":")
            line = ("L1", "L2", "L3").index(line_name)
            assert fid in ref.path(c.fuse)
            assert line in ref.loaded_lines(c)
            if d.state == "charging":
                assert predicted[fid][line] >= ref.limit(fid) - 1e-4, (c.id, reason, predicted[fid])
            else:
                assert d.state == "paused"
                alone = without_ev[fid].copy()
                ref.add(alone, ref.effective_lines(c), _lo(snapshot, c))
                assert ref.fixed(fid)[line] + ref.line_currents(alone)[line] > ref.limit(fid), (c.id, reason)
        elif reason in ("charger_max", "vehicle_max", "drawing") and d.state == "charging":
            _, hi = ref.bounds(c)
            assert d.current_a == pytest.approx(hi, abs=1e-6), (c.id, reason)
            if reason == "charger_max":
                assert hi == c.max_a
        elif reason == "rotation":
            assert d.state == "paused"
