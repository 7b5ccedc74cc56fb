"""The allocator over simulated time: its outputs are fed back into the next snapshot as the daemon does
(setpoints sent, charging/waiting since, start/stop times), with cars that draw what they are given up
to what they accept. This is where bounded waiting, the start/stop limit and taper recovery show."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from controller.allocation import Allocation, allocate
from controller.allocation.model import Charger, Fuse, Grid, Policy, SiteSnapshot, Vehicle
from drivers.contracts import Line
from tests.unit.allocation.reference import NOW


@dataclass
class Car:
    id: str
    lines: tuple[Line, ...]
    accept_a: float = 32.0  # what the car takes at most; below its setpoint it tapers
    setpoint_a: float = 0.0
    charging_since: datetime | None = None
    waiting_since: datetime | None = None
    starts: list[datetime] = field(default_factory=list)
    charging_intervals: list[tuple[datetime, datetime | None]] = field(default_factory=list)


@dataclass
class Garage:
    grid: str
    fuses: tuple[Fuse, ...]
    cars: list[Car]
    policy: Policy
    fuse_of: str = "c1"
    now: datetime = NOW

    def snapshot(self) -> SiteSnapshot:
        chargers = []
        for car in self.cars:
            drawing = min(car.setpoint_a, car.accept_a)
            per_line = tuple(drawing if line in car.lines else None for line in ("L1", "L2", "L3"))
            chargers.append(
                Charger(
                    id=car.id,
                    fuse=self.fuse_of,
                    lines=car.lines,
                    max_a=32.0,
                    setpoint_a=car.setpoint_a,
                    vehicle=Vehicle(
                        active_lines=car.lines,
                        drawing_a=(per_line[0], per_line[1], per_line[2]),
                        charging_since=car.charging_since,
                        waiting_since=car.waiting_since,
                        start_times=tuple(car.starts),
                    ),
                )
            )
        return SiteSnapshot(
            now=self.now,
            grid=Grid(type="IT" if self.grid == "IT" else "TN"),
            fuses=self.fuses,
            chargers=tuple(chargers),
            policy=self.policy,
        )

    def run_step(self, step_s: float) -> Allocation:
        allocation = allocate(self.snapshot())
        for car in self.cars:
            decision = allocation.chargers[car.id]
            on_before = car.setpoint_a > 0
            on_now = decision.current_a > 0
            if on_now and not on_before:
                car.charging_since, car.waiting_since = self.now, None
                car.charging_intervals.append((self.now, None))
                car.starts.append(self.now)
            elif on_before and not on_now:
                car.charging_since, car.waiting_since = None, self.now
                start, _ = car.charging_intervals[-1]
                car.charging_intervals[-1] = (start, self.now)
            car.setpoint_a = decision.current_a
        self.now += timedelta(seconds=step_s)
        return allocation


def _garage(grid: str, n_cars: int, places: int, policy: Policy) -> Garage:
    """A circuit with room for exactly `places` minimums: TN three-phase or IT L1-L2 pair cars."""
    limit = places * 6.0 + policy.safety_margin_a + 0.5
    lines: tuple[Line, ...] = ("L1", "L2", "L3") if grid == "TN" else ("L1", "L2")
    cars = [Car(id=f"car{i}", lines=lines, waiting_since=NOW) for i in range(n_cars)]
    fuses = (Fuse(id="main", limit_a=400.0), Fuse(id="c1", parent="main", limit_a=limit))
    return Garage(grid=grid, fuses=fuses, cars=cars, policy=policy)


def _waits(car: Car, end: datetime) -> list[float]:
    """Every stretch a car spent wanting energy without charging, in seconds."""
    waits = []
    previous_end: datetime | None = NOW
    for start, stop in car.charging_intervals:
        if previous_end is not None:
            waits.append((start - previous_end).total_seconds())
        previous_end = stop
    if previous_end is not None:
        waits.append((end - previous_end).total_seconds())
    return waits


def _max_starts_in_an_hour(times: list[datetime]) -> int:
    return max(
        (sum(1 for u in times if t <= u < t + timedelta(hours=1)) for t in times),
        default=0,
    )


@pytest.mark.parametrize(
    ("grid", "n_cars", "places"), [("TN", 5, 2), ("TN", 7, 3), ("IT", 4, 1), ("IT", 9, 4), ("TN", 3, 2)]
)
def test_waiting_is_bounded_by_the_rotation_queue(grid: str, n_cars: int, places: int) -> None:
    policy = Policy(rotation_period_s=900.0)
    garage = _garage(grid, n_cars, places, policy)
    step_s = 10.0
    for _ in range(int(4 * 3600 / step_s)):
        allocation = garage.run_step(step_s)
        assert sum(1 for d in allocation.chargers.values() if d.state == "charging") == places
    bound_s = math.ceil((n_cars - places) / places) * policy.rotation_period_s + step_s
    for car in garage.cars:
        waits = _waits(car, garage.now)
        assert car.charging_intervals, f"{car.id} never charged"
        assert max(waits) <= bound_s, (car.id, waits, bound_s)
        assert _max_starts_in_an_hour(car.starts) <= policy.max_starts_per_hour


def test_a_short_rotation_period_is_held_to_the_start_stop_limit() -> None:
    # Rotation alone would start a car every minute; the wear limit must win, and no one may starve.
    policy = Policy(rotation_period_s=60.0, max_starts_per_hour=2)
    garage = _garage("TN", 3, 1, policy)
    for _ in range(int(3 * 3600 / 10)):
        garage.run_step(10.0)
    for car in garage.cars:
        assert _max_starts_in_an_hour(car.starts) <= 2, car.id
        charged = sum(
            ((stop or garage.now) - start).total_seconds() for start, stop in car.charging_intervals
        )
        assert charged >= 1800, (car.id, charged)


def test_when_everyone_fits_nobody_is_paused_for_rotation() -> None:
    policy = Policy(rotation_period_s=60.0)
    garage = _garage("TN", 3, 3, policy)
    for _ in range(200):
        allocation = garage.run_step(10.0)
    assert all(d.state == "charging" for d in allocation.chargers.values())
    assert all(len(car.starts) == 1 for car in garage.cars)


def test_a_tapering_car_frees_current_and_gets_it_back() -> None:
    policy = Policy(safety_margin_a=2.0)
    fuses = (Fuse(id="c1", limit_a=40.0),)
    lines: tuple[Line, ...] = ("L1", "L2", "L3")
    cars = [Car(id="a", lines=lines, waiting_since=NOW), Car(id="b", lines=lines, waiting_since=NOW)]
    garage = Garage(grid="TN", fuses=fuses, cars=cars, policy=policy)
    for _ in range(20):
        garage.run_step(5.0)
    assert [c.setpoint_a for c in cars] == pytest.approx([19.0, 19.0], abs=1e-3)

    cars[0].accept_a = 8.0  # battery nearly full
    for _ in range(20):
        allocation = garage.run_step(5.0)
    assert allocation.chargers["a"].limited_by == "drawing"
    assert cars[0].setpoint_a == pytest.approx(8.0 + policy.taper_headroom_a, abs=1e-3)
    assert cars[1].setpoint_a == pytest.approx(38.0 - 11.0, abs=1e-3)

    cars[0].accept_a = 32.0  # preconditioning done, the car takes more again
    for _ in range(20):
        allocation = garage.run_step(5.0)
    assert [c.setpoint_a for c in cars] == pytest.approx([19.0, 19.0], abs=1e-3)
    assert allocation.chargers["a"].limited_by == "fuse:c1:L1"


def test_steady_state_does_not_jitter() -> None:
    """Once settled, repeated allocations send the same setpoints (no hunting between values)."""
    policy = Policy(safety_margin_a=2.0)
    lines: tuple[Line, ...] = ("L1", "L2", "L3")
    cars = [Car(id=f"c{i}", lines=lines, waiting_since=NOW, accept_a=[32.0, 9.0, 20.0][i]) for i in range(3)]
    garage = Garage(grid="TN", fuses=(Fuse(id="c1", limit_a=50.0),), cars=cars, policy=policy)
    for _ in range(30):
        garage.run_step(5.0)
    settled = [c.setpoint_a for c in cars]
    for _ in range(30):
        garage.run_step(5.0)
    assert [c.setpoint_a for c in cars] == settled
