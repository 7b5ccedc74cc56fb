"""The product's CentralSystem (drivers/ocpp) against the simulator's virtual chargers.

Both sides run on one accelerated timeline: a `drivers.clock.ScaledClock` for the CSMS and a
`simulator.clock.SimClock` for the chargers, built with the same speed, epoch and real start, so
profile start times the driver writes are the times the chargers evaluate them at. A stepper task
advances every charger's model (and its car) as the garage does, and keeps a history of what the
cars actually drew, so tests can check when a car followed a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from drivers.clock import ScaledClock
from drivers.contracts import ChargerEvent, ChargerStatus
from drivers.ocpp import (
    AuthEntry,
    CentralSystem,
    ChargePointConfig,
    CsmsConfig,
    InMemoryTransactionIds,
    LocalAuthList,
    TagKind,
    TransactionIds,
)
from simulator.cars import Car, CarSpec
from simulator.chargers import ChargerSpec, VirtualCharger, make_charger
from simulator.clock import SimClock
from tests.integration.ocpp_support import PASSWORD, PASSWORD_HASH
from tests.support.tcp_proxy import TcpProxy

SPEED = 25.0
# 40 s before a quarter-hour: clock-aligned meter values are due early in every test.
EPOCH = datetime(2026, 11, 22, 16, 59, 20, tzinfo=UTC)
STEP_S = 0.25
SAFE_A = 8.0
TAGS = ("TAG-1", "TAG-2", "TAG-3")

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Drawn:
    """One stepper sample of connector 1: what its car drew, what the charger offered it, the
    charger's energy register and the energy the car has taken since it was plugged in."""

    t_s: float
    identity: str
    current_a: float
    pilot_a: float
    register_wh: float
    car_energy_wh: float | None


@dataclass
class Site:
    csms: CentralSystem
    make_csms: Callable[[int], CentralSystem]
    chargers: dict[str, VirtualCharger]
    events: list[ChargerEvent]
    auth: LocalAuthList
    clock: ScaledClock
    sim_clock: SimClock
    proxy: TcpProxy | None
    csms_port: int
    history: list[Drawn] = field(default_factory=list)
    hooks: list[tuple[Callable[[ChargerEvent], bool], Callable[[], None]]] = field(default_factory=list)
    stepped: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------------------------------ time

    def now_s(self) -> float:
        return self.sim_clock.monotonic()

    async def sleep(self, sim_s: float) -> None:
        await self.sim_clock.sleep(sim_s)

    async def until(self, predicate: Callable[[], bool], what: str, timeout_sim_s: float = 60.0) -> None:
        """Wait, step by step, until `predicate()` holds; fail naming `what` after the deadline."""
        try:
            async with asyncio.timeout(self.sim_clock.loop_seconds(timeout_sim_s)):
                while not predicate():
                    self.stepped.clear()
                    await self.stepped.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout_sim_s} simulated s") from None

    async def stop_csms(self) -> None:
        """The daemon dies: its CSMS closes every connection and forgets its stations."""
        await self.csms.__aexit__(None, None, None)

    async def start_csms(self) -> None:
        """A new daemon on the same port, with the same collaborators (a persistent TransactionIds
        keeps what the previous one handed out)."""
        self.csms = self.make_csms(self.csms_port)
        await self.csms.__aenter__()

    # ---------------------------------------------------------------------------------- events

    def sink(self, event: ChargerEvent) -> None:
        self.events.append(event)
        for hook in list(self.hooks):
            if hook[0](event):
                self.hooks.remove(hook)
                hook[1]()

    def once(self, predicate: Callable[[ChargerEvent], bool], action: Callable[[], None]) -> None:
        """Run `action` inside the driver's sink, the first time an event matches: before the driver
        answers the message that caused it."""
        self.hooks.append((predicate, action))

    def of(self, kind: type[E], charger_id: str | None = None) -> list[E]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (charger_id is None or getattr(e, "charger_id", None) == charger_id)
        ]

    def status(self, charger_id: str) -> ChargerStatus | None:
        statuses = self.of(ChargerStatus, charger_id)
        return statuses[-1] if statuses else None

    # --------------------------------------------------------------------------------- chargers

    def charger(self, identity: str) -> VirtualCharger:
        return self.chargers[identity]

    def drawn(self, identity: str, since_s: float) -> list[Drawn]:
        return [d for d in self.history if d.identity == identity and d.t_s >= since_s]

    def first_time(self, identity: str, since_s: float, predicate: Callable[[Drawn], bool]) -> float:
        return next(d.t_s for d in self.drawn(identity, since_s) if predicate(d))

    async def step_forever(self) -> None:
        while True:
            t = self.sim_clock.monotonic()
            # The same instant as `t`: meter value timestamps then name the step they were taken at.
            now = EPOCH + timedelta(seconds=t)
            for identity, charger in self.chargers.items():
                charger.step(t, now)
                conn = charger.connectors[0]
                self.history.append(
                    Drawn(
                        t,
                        identity,
                        conn.current_a,
                        conn.pilot_a,
                        conn.register_wh,
                        None if conn.car is None else conn.car.energy_wh,
                    )
                )
            self.stepped.set()
            await self.sim_clock.sleep(STEP_S)


def charger_id(identity: str) -> str:
    """The product's id for connector/EVSE 1 of an OCPP identity."""
    return f"{identity}-1"


def car(*, phases: int = 1, max_current_a: float = 32.0, soc: float = 0.3, delay_s: float = 2.0) -> Car:
    spec = CarSpec(max_current_a=max_current_a, phases=phases, response_delay_s=delay_s, battery_kwh=60)
    return Car(spec, soc=soc, power_per_amp_w=230.0)  # the charger sets the real W/A when plugged


def sim_spec(identity: str, version: str, **overrides: Any) -> ChargerSpec:
    values: dict[str, Any] = {
        "identity": identity,
        "fuse": "c1",
        "version": version,
        "lines": ("L2", "L3", "L1"),
        "password": PASSWORD,
        "reconnect_s": 2.0,
        "reboot_s": 5.0,
        "profile_delay_s": 1.0,
        "energy_register_start_wh": 1_234_567.0,
    }
    values.update(overrides)
    return ChargerSpec(**values)


def csms_config(**overrides: Any) -> CsmsConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "call_timeout_s": 20.0,
        "handshake_timeout_s": 20.0,
        "boot_retry_interval_s": 5,
        "meter_value_sample_interval_s": 5,
        "clock_aligned_data_interval_s": 900,
        "ping_interval_s": None,
    }
    values.update(overrides)
    return CsmsConfig(**values)


@contextlib.asynccontextmanager
async def running_site(
    specs: Sequence[ChargerSpec],
    *,
    grid: str = "IT",
    through_proxy: bool = False,
    transaction_ids: TransactionIds | None = None,
    config: CsmsConfig | None = None,
    safe_current_a: float = SAFE_A,
) -> AsyncIterator[Site]:
    """The CSMS with one ChargePointConfig per spec, the chargers connected to it and stepped."""
    real_start_s = time.monotonic()
    clock = ScaledClock(SPEED, EPOCH, real_start_s=real_start_s)
    sim_clock = SimClock(SPEED, EPOCH, real_start_s=real_start_s)
    auth = LocalAuthList()
    auth.apply_full(1, {tag: AuthEntry(TagKind.RESIDENT) for tag in TAGS})
    points = [
        ChargePointConfig(
            spec.identity,
            {1: charger_id(spec.identity)},
            password_hash=PASSWORD_HASH,
            safe_current_a=safe_current_a,
            max_current_a=spec.max_current_a,
            phases=3 if len(spec.lines) == 3 else 1,
        )
        for spec in specs
    ]
    events: list[ChargerEvent] = []
    site_box: list[Site] = []
    ids = transaction_ids or InMemoryTransactionIds()
    base_config = config or csms_config()

    def make_csms(port: int) -> CentralSystem:
        return CentralSystem(
            dataclasses.replace(base_config, port=port),
            points,
            clock=clock,
            sink=lambda event: site_box[0].sink(event) if site_box else events.append(event),
            authorizer=auth,
            transaction_ids=ids,
        )

    csms = make_csms(base_config.port)
    async with contextlib.AsyncExitStack() as stack:
        await csms.__aenter__()
        # Whichever CSMS is running at the end (a test may have restarted it); closing twice is fine.
        stack.push_async_callback(
            lambda: (site_box[0].csms if site_box else csms).__aexit__(None, None, None)
        )
        proxy = await stack.enter_async_context(TcpProxy(csms.port)) if through_proxy else None
        port = proxy.port if proxy is not None else csms.port
        chargers = {
            spec.identity: make_charger(
                spec,
                grid=grid,  # type: ignore[arg-type]
                nominal_voltage_v=230.0,
                clock=sim_clock,
                csms_url=f"ws://127.0.0.1:{port}/ocpp",
            )
            for spec in specs
        }
        site = Site(csms, make_csms, chargers, events, auth, clock, sim_clock, proxy, csms.port)
        site_box.append(site)
        # Plain tasks rather than a TaskGroup: a failed assertion then reaches pytest as itself.
        tasks = [asyncio.create_task(c.run(), name=f"sim-{i}") for i, c in chargers.items()]
        tasks.append(asyncio.create_task(site.step_forever(), name="sim-stepper"))
        try:
            yield site
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            raise failures[0]
