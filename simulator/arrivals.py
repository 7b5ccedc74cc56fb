"""Cars arriving and leaving: a seeded Poisson process with plug-in times, tags and deadlines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulator.cars import CarSpec

DEFAULT_FLEET: tuple[tuple[float, CarSpec], ...] = (
    (0.35, CarSpec(battery_kwh=75, max_current_a=16, phases=3, response_delay_s=2.0, model="3ph-16")),
    (0.25, CarSpec(battery_kwh=58, max_current_a=32, phases=1, response_delay_s=3.0, model="1ph-32")),
    (0.2, CarSpec(battery_kwh=40, max_current_a=16, phases=1, draw_ratio=0.95, model="1ph-16-95pct")),
    (0.15, CarSpec(battery_kwh=90, max_current_a=32, phases=3, response_delay_s=4.5, model="3ph-32")),
    (0.05, CarSpec(battery_kwh=24, max_current_a=16, phases=2, response_delay_s=5.0, model="2ph-16")),
)


@dataclass(frozen=True, slots=True)
class CarArrival:
    """One visit: the car arrives, plugs in at `arrival_s` (seconds from the start) with `id_tag`,
    wants to reach `target_soc`, and leaves at `departure_s` whatever it got."""

    name: str
    arrival_s: float
    departure_s: float
    car: CarSpec
    soc: float
    target_soc: float
    id_tag: str
    charger: str | None = None

    def __post_init__(self) -> None:
        if self.departure_s <= self.arrival_s:
            raise ValueError(f"{self.name}: departure must come after arrival")


@dataclass(frozen=True, slots=True)
class ArrivalProcess:
    """`rate_per_h` is one rate, or 24 rates by hour of day (counted from `day_offset_s` at t=0)."""

    rate_per_h: tuple[float, ...] = (2.0,)
    mean_dwell_s: float = 4 * 3600.0
    dwell_sigma: float = 0.5
    min_dwell_s: float = 900.0
    soc_range: tuple[float, float] = (0.15, 0.6)
    target_soc: float = 0.9
    fleet: tuple[tuple[float, CarSpec], ...] = DEFAULT_FLEET
    tags: tuple[str, ...] = field(default_factory=tuple)
    day_offset_s: float = 0.0

    def rate_at(self, t_s: float) -> float:
        if len(self.rate_per_h) == 1:
            return self.rate_per_h[0]
        if len(self.rate_per_h) != 24:
            raise ValueError("rate_per_h takes 1 or 24 values")
        hour = int(((t_s + self.day_offset_s) // 3600) % 24)
        return self.rate_per_h[hour]


def generate_arrivals(process: ArrivalProcess, duration_s: float, seed: int) -> list[CarArrival]:
    """Arrivals within [0, duration_s): non-homogeneous Poisson by thinning, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    peak_per_s = max(process.rate_per_h) / 3600.0
    if peak_per_s <= 0:
        return []
    weights = np.array([w for w, _ in process.fleet], dtype=np.float64)
    weights /= weights.sum()
    mu = math.log(process.mean_dwell_s) - process.dwell_sigma**2 / 2
    out: list[CarArrival] = []
    t = 0.0
    while True:
        t += float(rng.exponential(1.0 / peak_per_s))
        if t >= duration_s:
            return out
        if rng.random() * peak_per_s > process.rate_at(t) / 3600.0:
            continue
        spec = process.fleet[int(rng.choice(len(weights), p=weights))][1]
        dwell = max(process.min_dwell_s, float(rng.lognormal(mu, process.dwell_sigma)))
        soc = float(rng.uniform(*process.soc_range))
        n = len(out)
        tag = process.tags[n % len(process.tags)] if process.tags else f"TAG{seed % 1000:03d}{n:05d}"
        out.append(
            CarArrival(
                name=f"car-{n:04d}",
                arrival_s=t,
                departure_s=t + dwell,
                car=spec,
                soc=min(soc, process.target_soc - 0.01),
                target_soc=process.target_soc,
                id_tag=tag,
            )
        )
