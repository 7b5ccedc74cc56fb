"""IL2 of three-wire meters, measured: `python -m bench.three_wire [--lists N] [--seeds S]`.

1. Garage evenings on the simulator's phasor physics (building loads on every branch at power
   factors 0.8-1, cars at unity on the three pairs and three-phase, steps of 5-25 A, a list every
   10 s), each full list through the virtual meter (Landis+Gyr and Aidon frames) and the real HAN
   decoder: the distribution of (IL2 used - true IL2) with the estimator and with the Kirchhoff
   bound it replaces, and how each list was decided.
2. The real IT frames of ../shared that carry the IL2 the meter computes (Kaifa, Kamstrup): that
   value against the estimate made without it.
3. The cost of one estimate (it runs on every full list, every 10 s).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from controller.site.three_wire import AronInputs, ThreeWireEstimator, ev_phasors
from drivers.contracts import MeterList, MeterReading, MeterVendor, ReceiveTime
from drivers.han import HanStreamDecoder
from simulator.han_meter import ListType, MeterState, Vendor, default_profile, encode
from simulator.physics.phasors import balanced_three_phase_load, branch_load, complex_power_va

PAIRS = (("L1", "L2"), ("L2", "L3"), ("L3", "L1"))
THREE = ("L1", "L2", "L3")
STAR_V = 230.0 / math.sqrt(3)
FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "han" / "frames.jsonl"


def _reading(phasors: np.ndarray, vendor: Vendor, decoder: HanStreamDecoder) -> MeterReading:
    s = complex_power_va(phasors, STAR_V)
    mags = np.abs(phasors)
    state = MeterState(
        current_a=(float(mags[0]), float(mags[1]), float(mags[2])),
        voltage_v=(230.0, 230.0, 230.0),
        active_power_import_w=max(s.real, 0.0),
        active_power_export_w=max(-s.real, 0.0),
        reactive_power_import_var=max(s.imag, 0.0),
        reactive_power_export_var=max(-s.imag, 0.0),
    )
    frame = encode(default_profile(vendor, 3, "IT"), ListType.FULL, state, datetime(2026, 11, 22, 18, 0))
    (reading,) = decoder.feed(frame, ReceiveTime(0.0, datetime(2026, 11, 22, 17, 0, tzinfo=UTC)))
    return reading


def evenings(lists: int, seeds: int, vendor: Vendor) -> tuple[list[float], list[float], Counter[str]]:
    used_errors: list[float] = []
    kirchhoff_errors: list[float] = []
    hows: Counter[str] = Counter()
    decoder = HanStreamDecoder()
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        base, pf = rng.uniform(5, 40, 3), rng.uniform(0.8, 1.0, 3)
        cars, three = rng.uniform(0, 60, 3), float(rng.uniform(0, 50))
        estimator = ThreeWireEstimator()
        for n in range(lists):
            base = np.clip(base + rng.normal(0, 0.5, 3), 0, 80)
            if rng.random() < 0.02:
                base[rng.integers(3)] += rng.choice([-1, 1]) * rng.uniform(5, 25)
            base = np.clip(base, 0, 80)
            if rng.random() < 0.2:
                k = rng.integers(3)
                cars[k] = max(0.0, cars[k] + rng.uniform(-8, 8))
            phasors = three * balanced_three_phase_load(THREE)
            for (x, y), b, p, c in zip(PAIRS, base, pf, cars, strict=True):
                phasors = phasors + b * branch_load(x, y, p) + c * branch_load(x, y)
            truth_a = float(abs(phasors[1]))
            inputs = AronInputs.from_reading(_reading(phasors, vendor, decoder))
            assert inputs is not None
            ev = ev_phasors([*zip(PAIRS, cars.tolist(), strict=True), (THREE, three)])
            estimate = estimator.estimate(inputs, ev, n * 10.0)
            used_a = inputs.i1_a + inputs.i3_a if estimate is None else estimate.i2_a
            hows[estimate.how if estimate is not None else "kirchhoff"] += 1
            used_errors.append(used_a - truth_a)
            kirchhoff_errors.append(inputs.i1_a + inputs.i3_a - truth_a)
    return used_errors, kirchhoff_errors, hows


def _describe(errors: list[float]) -> str:
    e = np.array(errors)
    p1, p50, p95, p99 = np.percentile(e, [1, 50, 95, 99])
    figures = (("min", e.min()), ("p1", p1), ("p50", p50), ("p95", p95), ("p99", p99), ("max", e.max()))
    return "  ".join(f"{name} {value:+7.2f}" for name, value in figures)


def real_frames() -> None:
    if not FRAMES.exists():
        print(f"  ({FRAMES} not found)")
        return
    for line in FRAMES.read_text().splitlines():
        row = json.loads(line)
        e = row.get("expected") or {}
        if row.get("grid") != "IT" or not e.get("current_l2_a"):
            continue
        reading = MeterReading(
            MeterVendor.KAIFA,
            MeterList.FULL,
            ReceiveTime(0.0, datetime(2026, 1, 1, tzinfo=UTC)),
            active_power_import_w=e["active_power_import_w"],
            active_power_export_w=e["active_power_export_w"],
            reactive_power_import_var=e["reactive_power_import_var"],
            reactive_power_export_var=e["reactive_power_export_var"],
            current_l1_a=e["current_l1_a"],
            current_l3_a=e["current_l3_a"],
            voltage_l1_v=e["voltage_l1_v"],
            voltage_l2_v=e["voltage_l2_v"],
            voltage_l3_v=e["voltage_l3_v"],
        )
        inputs = AronInputs.from_reading(reading)
        estimate = None if inputs is None else ThreeWireEstimator().estimate(inputs, (0j, 0j), 0.0)
        got = "-" if estimate is None else f"{estimate.i2_a:6.2f} ({estimate.how})"
        kirchhoff = e["current_l1_a"] + e["current_l3_a"]
        name = row["id"][:42]
        print(
            f"  {name:42s} meter IL2 {e['current_l2_a']:6.2f}  estimate {got:20s} Kirchhoff {kirchhoff:6.2f}"
        )


def timing(repeats: int) -> float:
    inputs = AronInputs(96.0, 91.0, 36_000.0, 4_000.0, 231.0, 229.0, None)
    estimator = ThreeWireEstimator()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for n in range(repeats):
            estimator.estimate(inputs, (0j, 0j), n * 10.0)
        samples.append((time.perf_counter() - started) / repeats)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=600, help="lists per evening (10 s apart)")
    parser.add_argument("--seeds", type=int, default=10, help="evenings")
    args = parser.parse_args()
    print(f"1. garage evenings: {args.seeds} x {args.lists} full lists; IL2 used - true IL2 (A)")
    for vendor in (Vendor.LANDIS_GYR, Vendor.AIDON):
        used, kirchhoff, hows = evenings(args.lists, args.seeds, vendor)
        print(f"  {vendor.value:11s} estimate   {_describe(used)}")
        print(f"  {'':11s} Kirchhoff  {_describe(kirchhoff)}")
        total = sum(hows.values())
        print(f"  {'':11s} decided: " + ", ".join(f"{k} {v / total:.1%}" for k, v in hows.most_common()))
    print("2. real IT frames that carry the meter's own IL2 (left out for the estimate)")
    real_frames()
    print(f"3. one estimate: {timing(200) * 1e6:.0f} us (median of 5 x 200)")


if __name__ == "__main__":
    main()
