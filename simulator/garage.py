"""The simulated garage: fuses, base loads, chargers and cars stepped at a fixed simulated step.

Each step (default 0.25 s): apply due faults; let cars arrive (plug into the first free connector,
or queue for one) and leave (unmet energy is recorded); step every charger's model, which offers its
profile limit to its car and integrates its energy register; collect load currents (cars, base
loads) into one vector and step the grid model (line currents of every fuse, energy registers,
trip accumulators); cut chargers below an open fuse; record a row every `record_every_steps`.

A car's current enters the fuse model as its energy-equivalent mean over the step, so the fuse
energy registers agree with the cars' exactly integrated energy; the recorded per-car current is
the instantaneous value at the end of the step.

`run()` paces the steps against the SimClock (the daemon under test shares it), with the virtual
chargers' websocket tasks alongside; `run_offline()` steps as fast as it can without networking
(physics only: chargers apply profiles nobody sends, so cars get the chargers' defaults).
"""

from __future__ import annotations

import asyncio
import math
import ssl
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import structlog

from simulator.arrivals import CarArrival, generate_arrivals
from simulator.baseload import BaseLoadProfile
from simulator.cars import Car
from simulator.chargers import VirtualCharger, make_charger
from simulator.chargers.base import Connector
from simulator.clock import SimClock
from simulator.physics.network import GridModel, NodeTruth
from simulator.physics.phasors import branch_load, car_load, line_load
from simulator.recording import STATE_CODES, Recording, TripEvent, VisitRecord
from simulator.scenario import FaultSpec, Scenario

_IT_BRANCHES = (("L1", "L2"), ("L2", "L3"), ("L3", "L1"))


@dataclass(slots=True)
class _Slot:
    """One connector of one charger, with the grid loads its car may be (1, 2 or 3 phases)."""

    charger: VirtualCharger
    connector: Connector
    loads: dict[int, int]
    visit: VisitRecord | None = None
    charging: bool = False
    wait_since_s: float | None = None


class Garage:
    def __init__(self, scenario: Scenario, clock: SimClock | None = None) -> None:
        scenario.validate()
        self.scenario = scenario
        self.clock = clock or SimClock(1.0, scenario.start_utc)
        self.log = structlog.get_logger("simulator.garage").bind(scenario=scenario.name)
        grid = scenario.grid
        self.grid = GridModel(grid.type, grid.nominal_voltage_v, scenario.fuses)
        self._tz = ZoneInfo(scenario.timezone)
        self._base: list[tuple[BaseLoadProfile, list[int]]] = []
        for base in scenario.base_loads:
            profile = BaseLoadProfile(base, scenario.duration_s, scenario.seed)
            if grid.type == "IT":
                coeffs = [branch_load(x, y, base.power_factor) for x, y in _IT_BRANCHES]
            else:
                coeffs = [line_load(line, base.power_factor) for line in ("L1", "L2", "L3")]
            idx = [self.grid.add_load(base.fuse, c, f"{base.id}/{k}") for k, c in enumerate(coeffs)]
            self._base.append((profile, idx))
        ssl_context = None
        if scenario.ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=scenario.ca_file)
        self.chargers: list[VirtualCharger] = []
        self.slots: list[_Slot] = []
        for spec in scenario.chargers:
            charger = make_charger(
                spec,
                grid=grid.type,
                nominal_voltage_v=grid.nominal_voltage_v,
                clock=self.clock,
                csms_url=scenario.csms_url,
                ssl_context=ssl_context,
            )
            self.chargers.append(charger)
            for conn in charger.connectors:
                loads = {}
                for n in range(1, charger.phases + 1):
                    loads[n] = self.grid.add_load(
                        spec.fuse,
                        car_load(grid.type, list(spec.lines_of(conn.id)), n),
                        f"{spec.identity}/{conn.id}/{n}ph",
                    )
                self.slots.append(_Slot(charger, conn, loads))
        visits = list(scenario.visits)
        if scenario.arrivals is not None:
            visits += generate_arrivals(scenario.arrivals, scenario.duration_s, scenario.seed)
        self._arrivals = sorted(visits, key=lambda v: v.arrival_s)
        self._next_arrival = 0
        self._queue: list[tuple[CarArrival, VisitRecord]] = []
        self._faults = sorted(scenario.faults, key=lambda f: f.at_s)
        self._next_fault = 0
        self._reverts: list[tuple[float, FaultSpec]] = []
        self._currents = np.zeros(self.grid.load_count)
        self.t0_s = 0.0
        self.elapsed_s = 0.0
        self._steps = 0
        rows = math.ceil(scenario.duration_s / scenario.step_s / scenario.record_every_steps) + 2
        self.recording = Recording(
            scenario=scenario.name,
            step_s=scenario.step_s,
            row_interval_s=scenario.step_s * scenario.record_every_steps,
            fuse_ids=self.grid.tree.ids,
            fuse_limits_a=self.grid.tree.limits_a.copy(),
            fuse_parents=self.grid.tree.parent,
            connector_ids=tuple(f"{s.charger.spec.identity}/{s.connector.id}" for s in self.slots),
            connector_fuse_paths=tuple(
                tuple(self.grid.tree.path_to_root(s.charger.spec.fuse)) for s in self.slots
            ),
            charger_ids=tuple(c.spec.identity for c in self.chargers),
            capacity_rows=rows,
        )
        self._visit_of: dict[str, VisitRecord] = {}
        self._cars: dict[str, Car] = {}
        self._arrival_of: dict[str, CarArrival] = {}

    # ------------------------------------------------------------------ time
    @property
    def now_s(self) -> float:
        """Clock seconds (what the chargers and the daemon under test see)."""
        return self.t0_s + self.elapsed_s

    def _local_s_of_day(self) -> float:
        local = (self.clock.epoch_utc + timedelta(seconds=self.now_s)).astimezone(self._tz)
        return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Advance the garage by one step."""
        dt = self.scenario.step_s
        self._apply_faults()
        self._arrive_and_depart()
        self.elapsed_s += dt
        now_s = self.now_s
        now_utc = self.clock.epoch_utc + timedelta(seconds=now_s)
        for charger in self.chargers:
            charger.step(now_s, now_utc)
        currents = self._currents
        currents[:] = 0.0
        for slot in self.slots:
            car = slot.connector.car
            if car is not None:
                currents[slot.loads[min(car.spec.phases, slot.charger.phases)]] = (
                    slot.connector.mean_current_a
                )
            self._track(slot)
        if self._base:
            local_s = self._local_s_of_day()
            for profile, idx in self._base:
                currents[idx] = profile.currents_a(self.elapsed_s, local_s)
        opened = self.grid.step(currents, dt)
        for fuse_id in opened:
            i = self.grid.tree.index[fuse_id]
            cur = self.grid.line_currents_a[i]
            self.recording.trips.append(
                TripEvent(self.elapsed_s, fuse_id, (float(cur[0]), float(cur[1]), float(cur[2])))
            )
            self.log.warning("fuse_tripped", fuse=fuse_id, t_s=round(self.elapsed_s, 2))
        if opened:
            self._follow_supply()
        self._steps += 1
        if self._steps % self.scenario.record_every_steps == 0:
            self._record()

    def _follow_supply(self) -> None:
        for charger in self.chargers:
            dead = self.grid.is_dead(charger.spec.fuse)
            if dead and charger.powered:
                charger.power_off("PowerLoss")
            elif not dead and not charger.powered:
                charger.restore_power()

    def _track(self, slot: _Slot) -> None:
        visit, car = slot.visit, slot.connector.car
        if visit is None or car is None:
            return
        charging = car.current_a > 0
        if charging and not slot.charging:
            visit.starts += 1
        elif slot.charging and not charging:
            visit.stops += 1
        slot.charging = charging
        waiting = car.wants_energy and not charging
        if waiting and slot.wait_since_s is None:
            slot.wait_since_s = self.elapsed_s
        elif not waiting and slot.wait_since_s is not None:
            visit.longest_wait_s = max(visit.longest_wait_s, self.elapsed_s - slot.wait_since_s)
            slot.wait_since_s = None

    def _record(self) -> None:
        n = len(self.slots)
        cur = np.zeros(n)
        pilot = np.zeros(n)
        wants = np.zeros(n, dtype=np.bool_)
        state = np.zeros(n, dtype=np.int8)
        waiting = 0
        for i, slot in enumerate(self.slots):
            conn = slot.connector
            cur[i] = conn.current_a if conn.car is not None else 0.0
            pilot[i] = conn.pilot_a
            wants[i] = conn.car is not None and conn.car.wants_energy
            state[i] = STATE_CODES[conn.status]
            if wants[i] and cur[i] <= 0:
                waiting += 1
        links = np.array([c.link for c in self.chargers], dtype=np.int8)
        self.recording.add_row(
            self.elapsed_s,
            self.grid.line_currents_a,
            cur,
            pilot,
            wants,
            state,
            links,
            len(self._queue),
            waiting,
        )

    # ------------------------------------------------------------------ cars
    def _arrive_and_depart(self) -> None:
        t = self.elapsed_s
        while self._next_arrival < len(self._arrivals) and self._arrivals[self._next_arrival].arrival_s <= t:
            arrival = self._arrivals[self._next_arrival]
            self._next_arrival += 1
            record = VisitRecord(
                name=arrival.name,
                id_tag=arrival.id_tag,
                model=arrival.car.model,
                arrival_s=arrival.arrival_s,
                departure_s=arrival.departure_s,
            )
            self.recording.visits.append(record)
            self._queue.append((arrival, record))
        for slot in self.slots:
            visit = slot.visit
            if visit is not None and visit.departure_s <= t:
                self._depart(slot, visit)
        still: list[tuple[CarArrival, VisitRecord]] = []
        for arrival, record in self._queue:
            if arrival.departure_s <= t:
                record.departed = True
                record.wanted_wh = Car(
                    arrival.car, soc=arrival.soc, target_soc=arrival.target_soc, power_per_amp_w=1.0
                ).energy_wanted_wh
                record.unmet_wh = record.wanted_wh
                continue
            free = self._free_slot(arrival.charger)
            if free is None:
                still.append((arrival, record))
                continue
            self._plug(free, arrival, record)
        self._queue = still

    def _free_slot(self, charger: str | None) -> _Slot | None:
        for slot in self.slots:
            conn = slot.connector
            if conn.car is None and conn.operative and charger in (None, slot.charger.spec.identity):
                return slot
        return None

    def _plug(self, slot: _Slot, arrival: CarArrival, record: VisitRecord) -> None:
        car = Car(
            arrival.car,
            soc=arrival.soc,
            target_soc=arrival.target_soc,
            power_per_amp_w=1.0,  # set by the charger from its wiring when plugged
            name=arrival.name,
            start_s=self.now_s,
        )
        record.charger = slot.charger.spec.identity
        record.connector = slot.connector.id
        record.plug_s = self.elapsed_s
        record.wanted_wh = car.energy_wanted_wh
        slot.visit, slot.charging, slot.wait_since_s = record, False, None
        slot.charger.plug(slot.connector.id, car, arrival.id_tag)

    def _depart(self, slot: _Slot, visit: VisitRecord) -> None:
        car = slot.charger.unplug(slot.connector.id)
        if slot.wait_since_s is not None:
            visit.longest_wait_s = max(visit.longest_wait_s, self.elapsed_s - slot.wait_since_s)
        if car is not None:
            visit.delivered_wh = car.energy_wh
            visit.unmet_wh = car.energy_wanted_wh
        visit.departed = True
        slot.visit, slot.charging, slot.wait_since_s = None, False, None

    def _finish_visits(self) -> None:
        """At the end of the run, close the books of cars still plugged in (not departed)."""
        for slot in self.slots:
            visit, car = slot.visit, slot.connector.car
            if visit is None or car is None:
                continue
            if slot.wait_since_s is not None:
                visit.longest_wait_s = max(visit.longest_wait_s, self.elapsed_s - slot.wait_since_s)
            visit.delivered_wh = car.energy_wh
            visit.unmet_wh = car.energy_wanted_wh

    # ------------------------------------------------------------------ faults
    def _apply_faults(self) -> None:
        t = self.elapsed_s
        while self._reverts and self._reverts[0][0] <= t:
            _, fault = self._reverts.pop(0)
            for charger in self._targets(fault.target):
                if fault.kind == "ignore_profiles":
                    charger.ignore_profiles = charger.spec.ignore_profiles
                elif fault.kind == "network_delay":
                    charger.network_delay_s = 0.0
        while self._next_fault < len(self._faults) and self._faults[self._next_fault].at_s <= t:
            fault = self._faults[self._next_fault]
            self._next_fault += 1
            self.log.info("fault", kind=fault.kind, target=fault.target, t_s=round(t, 2))
            if fault.kind == "fuse_reclose":
                self.grid.reclose(fault.target)
                self._follow_supply()
                continue
            for charger in self._targets(fault.target):
                if fault.kind == "charger_disconnect":
                    charger.disconnect(fault.duration_s)
                elif fault.kind == "charger_reboot":
                    charger.power_cycle("PowerLoss")
                elif fault.kind == "ignore_profiles":
                    charger.ignore_profiles = True
                elif fault.kind == "network_delay":
                    charger.network_delay_s = fault.value
            if fault.kind in ("ignore_profiles", "network_delay") and fault.duration_s > 0:
                self._reverts.append((fault.at_s + fault.duration_s, fault))
                self._reverts.sort(key=lambda item: item[0])

    def _targets(self, target: str) -> list[VirtualCharger]:
        return [c for c in self.chargers if target in ("*", c.spec.identity)]

    # ------------------------------------------------------------------ running
    def finished(self) -> bool:
        return self.elapsed_s >= self.scenario.duration_s - 1e-9

    def run_offline(self) -> Recording:
        """Step to the end as fast as possible, without networking (physics only)."""
        while not self.finished():
            self.step()
        self._finish_visits()
        return self.recording.trimmed()

    async def run(self, start_s: float | None = None) -> Recording:
        """Step in pace with the clock, with the chargers connected to the scenario's CSMS.

        `start_s` is the clock time that is the scenario's t = 0 (default: now); a caller that
        schedules other things on the scenario's timeline (meter faults, a daemon kill) fixes it."""
        self.t0_s = self.clock.monotonic() if start_s is None else start_s
        async with asyncio.TaskGroup() as group:
            tasks = []
            if self.scenario.csms_url is not None:
                tasks = [group.create_task(c.run(), name=f"charger-{c.spec.identity}") for c in self.chargers]
            try:
                while not self.finished():
                    behind_s = self.clock.monotonic() - self.now_s
                    # Catch up in a burst when the event loop was busy, then yield to the chargers.
                    for _ in range(max(1, min(400, int(behind_s / self.scenario.step_s)))):
                        if self.finished():
                            break
                        self.step()
                    await self.clock.sleep_until(self.now_s + self.scenario.step_s)
            finally:
                for task in tasks:
                    task.cancel()
        self._finish_visits()
        return self.recording.trimmed()

    # ------------------------------------------------------------------ ground truth
    def node_truth(self, fuse_id: str) -> NodeTruth:
        """What an ideal meter on this fuse node reads now (for the virtual HAN meter)."""
        return self.grid.node_truth(fuse_id)

    def load_currents_a(self) -> npt.NDArray[np.float64]:
        return self._currents.copy()
