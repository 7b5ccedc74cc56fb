"""Running a scenario: the garage, its virtual meter and its virtual chargers on real endpoints.

`SimulationRun` is the live garage as an async context manager: entering it opens the meter's pty
(or TCP port) and starts the meter; `endpoints` says where a controller connects; `run()` steps
the garage on the shared SimClock with every charger a websocket client of the CSMS, to the end.
`run_scenario` is the command-line driver around it (print the endpoints, run, write the report
and plot, print a summary); `around` lets a caller (sitectl, which may import the product) start
the daemon under test once the endpoints exist and stop it after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from simulator.clock import SimClock
from simulator.garage import Garage
from simulator.garage_meter import GarageMeter
from simulator.metrics import plot, report
from simulator.recording import Recording
from simulator.scenario_file import LoadedScenario, scenario_summary


@dataclass(frozen=True, slots=True)
class ChargerEndpoint:
    identity: str
    version: str
    connectors: int
    password: str
    url: str | None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a controller meets the simulated garage (also written as JSON for harnesses)."""

    scenario: str
    meter_port: str | None
    meter_device: str | None
    meter_vendor: str | None
    csms_url: str | None
    chargers: tuple[ChargerEndpoint, ...]
    clock_speed: float
    clock_epoch_utc: str
    clock_real_start_s: float
    controller_kills: tuple[dict[str, float], ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SimulationRun:
    """The live garage: `async with SimulationRun(loaded, csms_url=...) as sim: await sim.run()`."""

    def __init__(
        self,
        loaded: LoadedScenario,
        *,
        speed: float | None = None,
        csms_url: str | None = None,
        meter_link: Path | None = None,
        meter_tcp: tuple[str, int] | None = None,
        meter_serial: str | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self.loaded = loaded
        scenario = replace(loaded.scenario, csms_url=csms_url)
        self.clock = clock or SimClock(speed or loaded.speed, scenario.start_utc)
        self.garage = Garage(scenario, self.clock)
        self._meter_link = meter_link
        self._meter_tcp = meter_tcp
        self._meter_serial = meter_serial
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.meter: GarageMeter | None = None
        self._meter_task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.t0_s = 0.0

    async def __aenter__(self) -> Self:
        spec = self.loaded.meter
        if spec is not None:
            link = self._meter_link
            if (
                link is None
                and self._meter_tcp is None
                and self._meter_serial is None
                and spec.output == "pty"
                and spec.link is None
            ):
                self._tmp = tempfile.TemporaryDirectory(prefix="sim-meter-")
                link = Path(self._tmp.name) / "ttyHAN"
            fuse = spec.fuse
            garage = self.garage
            self.meter = GarageMeter(
                spec,
                lambda: garage.node_truth(fuse),
                self.clock,
                seed=self.loaded.scenario.seed,
                link=link,
                tcp=self._meter_tcp,
                serial_device=self._meter_serial,
            )
            await self.meter.__aenter__()
            self._meter_task = asyncio.create_task(self.meter.run(), name="garage-meter")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._meter_task is not None:
            self._meter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._meter_task
        if self.meter is not None:
            await self.meter.__aexit__(exc_type, exc, tb)
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def endpoints(self) -> Endpoints:
        scenario = self.garage.scenario
        csms = scenario.csms_url
        return Endpoints(
            scenario=scenario.name,
            meter_port=self.meter.port if self.meter is not None else None,
            meter_device=self.meter.device if self.meter is not None else None,
            meter_vendor=self.loaded.meter.vendor if self.loaded.meter is not None else None,
            csms_url=csms,
            chargers=tuple(
                ChargerEndpoint(
                    identity=c.identity,
                    version=c.version,
                    connectors=c.connectors,
                    password=c.password or "",
                    url=f"{csms.rstrip('/')}/{c.identity}" if csms else None,
                )
                for c in scenario.chargers
            ),
            clock_speed=self.clock.speed,
            clock_epoch_utc=self.clock.epoch_utc.isoformat().replace("+00:00", "Z"),
            clock_real_start_s=self.clock.real_start_s,
            controller_kills=tuple(
                {"at_s": k.at_s, "duration_s": k.duration_s} for k in self.loaded.controller_kills
            ),
        )

    async def run(self) -> Recording:
        """Step the garage to the end of the scenario (t = 0 is now), with the meter's faults on
        the same timeline."""
        self.t0_s = self.clock.monotonic()
        if self.meter is not None:
            self.meter.schedule_faults(
                self.loaded.meter_faults, self.clock.epoch_utc + timedelta(seconds=self.t0_s)
            )
        self._started.set()
        return await self.garage.run(start_s=self.t0_s)

    async def sleep_until_scenario_s(self, at_s: float) -> None:
        """Wait until the scenario's clock reads `at_s` (seconds from its start)."""
        await self._started.wait()
        await self.clock.sleep_until(self.t0_s + at_s)


Around = Callable[[SimulationRun], AbstractAsyncContextManager[None]]


def run_scenario(
    loaded: LoadedScenario,
    *,
    speed: float | None = None,
    csms_url: str | None = None,
    meter_link: Path | None = None,
    meter_tcp: tuple[str, int] | None = None,
    meter_serial: str | None = None,
    offline: bool = False,
    report_path: Path | None = None,
    plot_path: Path | None = None,
    endpoints_path: Path | None = None,
    around: Around | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run a loaded scenario as the command line does; returns the report (JSON-ready dict)."""
    for line in scenario_summary(loaded):
        out(line)
    extra: dict[str, Any] = {"seed": loaded.scenario.seed}
    if offline:
        out("offline: physics only, no endpoints, as fast as possible (the chargers' own defaults apply)")
        rec = Garage(loaded.scenario).run_offline()
        extra["run"] = {"mode": "offline"}
    else:
        rec, live = asyncio.run(
            run_live(
                loaded,
                speed=speed,
                csms_url=csms_url,
                meter_link=meter_link,
                meter_tcp=meter_tcp,
                meter_serial=meter_serial,
                endpoints_path=endpoints_path,
                around=around,
                out=out,
            )
        )
        extra.update(live)
    data = report(rec)
    data.update(extra)
    if report_path is not None:
        write_json(report_path, data)
        out(f"report written to {report_path}")
    if plot_path is not None:
        plot(rec, plot_path)
        out(f"plot written to {plot_path}")
    for line in summary_lines(data):
        out(line)
    return data


async def run_live(
    loaded: LoadedScenario,
    *,
    speed: float | None = None,
    csms_url: str | None = None,
    meter_link: Path | None = None,
    meter_tcp: tuple[str, int] | None = None,
    meter_serial: str | None = None,
    endpoints_path: Path | None = None,
    around: Around | None = None,
    out: Callable[[str], None] = print,
) -> tuple[Recording, dict[str, Any]]:
    """The live part of a run: endpoints up, optional `around` (a daemon), the garage to the end.
    Returns the recording and the run's counters for the report."""
    async with SimulationRun(
        loaded,
        speed=speed,
        csms_url=csms_url,
        meter_link=meter_link,
        meter_tcp=meter_tcp,
        meter_serial=meter_serial,
    ) as sim:
        endpoints = sim.endpoints
        for line in endpoint_lines(endpoints):
            out(line)
        if endpoints_path is not None:
            write_json(endpoints_path, endpoints.to_json())
            out(f"endpoints written to {endpoints_path}")
        if loaded.controller_kills and around is None:
            out("note: controller_kill faults need a daemon the run starts itself (--with-daemon); skipped")
        duration_s = loaded.scenario.duration_s
        out(
            f"running {duration_s:g} simulated s at {sim.clock.speed:g}x "
            f"(about {duration_s / sim.clock.speed:.0f} s)"
        )
        async with around(sim) if around is not None else contextlib.nullcontext():
            rec = await sim.run()
        extra: dict[str, Any] = {"run": {"mode": "live", "speed": sim.clock.speed, "csms_url": csms_url}}
        if sim.meter is not None:
            extra["meter"] = sim.meter.counters()
        extra["chargers"] = {
            c.spec.identity: {k: v for k, v in c.counters.items() if v} for c in sim.garage.chargers
        }
    return rec, extra


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def endpoint_lines(endpoints: Endpoints) -> list[str]:
    lines = []
    if endpoints.meter_port is not None:
        device = f" (device {endpoints.meter_device})" if endpoints.meter_device else ""
        lines.append(f"meter: {endpoints.meter_vendor} HAN frames on {endpoints.meter_port}{device}")
    if endpoints.csms_url is None:
        lines.append("chargers: offline models (no --csms-url): they offer their defaults to the cars")
    else:
        lines.append(
            f"chargers: websocket clients of {endpoints.csms_url}/<identity>; identities and passwords:"
        )
        lines += [f"  {c.identity:<16} OCPP {c.version:<6} {c.password}" for c in endpoints.chargers]
    lines.append(
        f"clock: {endpoints.clock_speed:g}x from {endpoints.clock_epoch_utc} "
        f"(anchor {endpoints.clock_real_start_s:.6f} on the monotonic clock)"
    )
    return lines


def summary_lines(data: dict[str, Any], max_lines: int = 8) -> list[str]:
    """The scores of a run for people: overload, trips, utilization, fairness, waits, energy."""
    out = ["", f"summary of {data['scenario']} ({data['duration_s']:g} s simulated):"]
    over = sorted(data["overload"]["lines"], key=lambda x: -x["overload_as"])
    if not over:
        out.append("  overload: none (every fuse line stayed within its rating)")
    else:
        out.append(f"  overload: {data['overload']['total_as']:.1f} A*s above ratings in all")
        for x in over[:max_lines]:
            out.append(
                f"    {x['fuse']} {x['line']}: {x['overload_as']:.1f} A*s, {x['time_above_s']:.0f} s above "
                f"{x['limit_a']:g} A in {x['episodes']} spells (longest {x['longest_above_s']:.1f} s), "
                f"peak {x['peak_a']:.1f} A ({x['peak_ratio']:.2f}x)"
            )
        if len(over) > max_lines:
            out.append(f"    ... {len(over) - max_lines} more lines in the report")
    trips = data["trips"]
    if not trips:
        out.append("  trips: none")
    else:
        out.append("  trips: " + ", ".join(f"{t['fuse']} at {t['t_s']:.0f} s" for t in trips[:max_lines]))
    util = {k: v for k, v in data["utilization"].items() if v is not None}
    if util:
        shown = list(util.items())[:max_lines]
        text = ", ".join(f"{k} {v:.2f}" for k, v in shown)
        more = f" (+{len(util) - len(shown)} more)" if len(util) > len(shown) else ""
        out.append(f"  utilization while cars wanted energy (of rating): {text}{more}")
    fair = data["fairness"]
    if fair["cars_with_unmet_demand"]:
        out.append(
            f"  fairness (Jain, {fair['cars_with_unmet_demand']} cars short of their target): "
            f"energy {fair['jain_energy']:.3f}, energy per plugged hour {fair['jain_energy_per_hour']:.3f}"
        )
    else:
        out.append("  fairness: every car reached its target")
    waits = data["waits"]
    out.append(
        f"  longest wait: {waits['longest_plugged_not_charging_s']:.0f} s plugged in but not charging, "
        f"{waits['longest_for_a_charger_s']:.0f} s for a free charger"
    )
    energy = data["energy"]
    out.append(
        f"  energy: {energy['delivered_wh'] / 1000:.1f} kWh delivered to {energy['cars']} cars, "
        f"{energy['unmet_at_departure_wh'] / 1000:.1f} kWh unmet at departure "
        f"({energy['cars_left_unmet']} left short, {energy['cars_never_plugged']} never plugged in)"
    )
    return out
