"""The virtual charger: connectors with cars, smart-charging limits, and an OCPP-J websocket client.

Two halves share one object:
- the model, stepped synchronously by the garage at simulated time: it evaluates the charging
  profiles, offers the resulting pilot current to each plugged car, integrates the energy register,
  derives connector states, and queues the messages those changes imply (status, transaction
  events, sampled and clock-aligned meter values, heartbeats);
- the link, an asyncio task: connect with basic auth (and TLS for wss), boot (Pending/Rejected ->
  retry after the interval the CSMS gave), then send the queue one CALL at a time (OCPP allows one
  outstanding CALL) while answering the CSMS's CALLs. Transaction messages survive a lost
  connection and a reboot and are replayed in order; other messages are dropped while offline and
  a fresh StatusNotification for every connector follows each (re)connection.
The OCPP dialects (1.6J, 2.0.1) are subclasses that build payloads and handle actions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import math
import ssl
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import structlog
import websockets
from websockets.asyncio.client import ClientConnection, connect

from simulator.cars import Car
from simulator.chargers.rpc import (
    SUBPROTOCOL,
    Call,
    CallError,
    CallResult,
    FrameError,
    OcppError,
    Payload,
    Version,
    decode,
    encode,
    framing_error,
)
from simulator.chargers.smart import ProfileStore
from simulator.chargers.spec import ChargerSpec, Settings
from simulator.clock import SimClock
from simulator.physics.phasors import Grid, car_load, line_index, power_per_amp_w, star_voltage_v

StopReason = Literal[
    "EVDisconnected", "Remote", "HardReset", "SoftReset", "PowerLoss", "DeAuthorized", "Local"
]
Status = Literal[
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Unavailable"
]


@dataclass(slots=True)
class Transaction:
    connector: int
    id_tag: str
    start_utc: datetime
    meter_start_wh: float
    local_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    server_id: int | None = None  # OCPP 1.6: assigned by the CSMS in StartTransaction.conf
    seq_no: int = 0
    remote_start_id: int | None = None
    charging_state: str | None = None
    ended: bool = False

    def next_seq(self) -> int:
        seq = self.seq_no
        self.seq_no += 1
        return seq


@dataclass(slots=True)
class Connector:
    id: int
    register_wh: float
    car: Car | None = None
    id_tag: str | None = None
    tx: Transaction | None = None
    status: Status = "Available"
    pilot_a: float = 0.0
    current_a: float = 0.0
    mean_current_a: float = 0.0
    terminal_a: tuple[float, ...] = ()
    power_w: float = 0.0
    operative: bool = True
    finishing: bool = False
    authorizing: bool = False
    remote: tuple[str, float, int | None] | None = None  # id tag, expiry (sim s), remoteStartId
    next_sample_s: float = math.inf
    terminal_per_amp: tuple[float, ...] = ()


@dataclass(slots=True)
class Outgoing:
    action: str
    build: Callable[[], Payload]
    transactional: bool = False
    on_result: Callable[[Payload], None] | None = None
    attempts: int = 0
    offline: bool = False


class LinkState:
    """What the garage and its recorder see of the link."""

    OFFLINE = 0
    CONNECTED = 1
    BOOTED = 2
    REBOOTING = 3


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class VirtualCharger(ABC):
    version: Version

    def __init__(
        self,
        spec: ChargerSpec,
        *,
        grid: Grid,
        nominal_voltage_v: float,
        clock: SimClock,
        csms_url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self.grid: Grid = grid
        self.clock = clock
        self.csms_url = csms_url
        self.ssl_context = ssl_context
        self.phases = spec.phases(grid)
        self._star_v = star_voltage_v(grid, nominal_voltage_v)
        self.nominal_voltage_v = nominal_voltage_v
        self.settings = Settings(
            heartbeat_interval_s=spec.heartbeat_interval_s,
            sample_interval_s=spec.meter_sample_interval_s,
            aligned_interval_s=spec.clock_aligned_interval_s,
        )
        self.profiles = ProfileStore()
        self.connectors = [
            Connector(id=i + 1, register_wh=spec.energy_register_start_wh) for i in range(spec.connectors)
        ]
        self.log = structlog.get_logger("simulator.charger").bind(charger=spec.identity)
        self.ignore_profiles = spec.ignore_profiles
        self.network_delay_s = 0.0
        self.link = LinkState.OFFLINE
        self.counters: dict[str, int] = {
            "connects": 0,
            "boots": 0,
            "frames_in": 0,
            "frames_bad": 0,
            "call_errors_sent": 0,
            "call_errors_received": 0,
            "replayed": 0,
            "profiles_set": 0,
        }
        self.now_s = 0.0
        self.now_utc = clock.epoch_utc
        self._outbox: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._pending_calls: dict[str, asyncio.Future[Payload | CallError]] = {}
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._offline_until_s = -math.inf
        self._rebooting_until_s = -math.inf
        self._reboot_requested: StopReason | None = None
        self._boot_reason = "PowerUp"
        self._timed: list[tuple[float, Callable[[], None]]] = []
        self._next_heartbeat_s = math.inf
        self._next_aligned_s = math.inf
        self._resend_status = False
        self._after_reply: dict[str, Callable[[], None]] = {}
        self._link_wake = asyncio.Event()
        self._boot_now = asyncio.Event()

    # ================================================================== model (synchronous)
    @property
    def networked(self) -> bool:
        return self.csms_url is not None

    @property
    def online(self) -> bool:
        return self.link == LinkState.BOOTED

    def power_per_amp_w(self, phases: int | None = None) -> float:
        """Watts per ampere for `phases` (None: the charger's own) - converts W profiles to A."""
        n = min(self.phases, phases or self.phases)
        return power_per_amp_w(car_load(self.grid, list(self.spec.lines), n), self._star_v)

    def plug(self, connector_id: int, car: Car, id_tag: str | None) -> None:
        """A car is plugged in; `id_tag` is the RFID tag its driver presents (None: none)."""
        conn = self.connector(connector_id)
        if conn.car is not None:
            raise ValueError(f"{self.spec.identity}/{connector_id} already has a car")
        n = min(car.spec.phases, self.phases)
        lines = self.spec.lines_of(connector_id)
        coeffs = car_load(self.grid, list(lines), n)
        car.power_per_amp_w = power_per_amp_w(coeffs, self._star_v)
        conn.terminal_per_amp = tuple(float(abs(coeffs[line_index(line)])) for line in lines)
        conn.car, conn.id_tag, conn.finishing = car, id_tag, False
        if conn.remote is not None and conn.remote[1] >= self.now_s:
            tag, _, remote_id = conn.remote
            conn.remote = None
            self._start_transaction(conn, tag, remote_start_id=remote_id)
        elif id_tag is not None:
            self._authorize_and_start(conn, id_tag)
        car.set_pilot(conn.pilot_a, self.now_s)
        self._update_status(conn)

    def unplug(self, connector_id: int) -> Car | None:
        conn = self.connector(connector_id)
        car = conn.car
        if car is None:
            return None
        if conn.tx is not None:
            self._stop_transaction(conn, "EVDisconnected")
        conn.car, conn.id_tag, conn.finishing, conn.authorizing = None, None, False, False
        conn.current_a, conn.mean_current_a, conn.power_w, conn.pilot_a = 0.0, 0.0, 0.0, 0.0
        conn.terminal_a = tuple(0.0 for _ in self.spec.lines)
        self._update_status(conn)
        return car

    def connector(self, connector_id: int) -> Connector:
        if not 1 <= connector_id <= len(self.connectors):
            raise ValueError(f"{self.spec.identity} has no connector {connector_id}")
        return self.connectors[connector_id - 1]

    def free_connector(self) -> Connector | None:
        return next((c for c in self.connectors if c.car is None and c.operative), None)

    @property
    def rebooting(self) -> bool:
        """Without supply or still booting: offers no current and has no link."""
        return self.now_s < self._rebooting_until_s

    def step(self, now_s: float, now_utc: datetime) -> None:
        """Advance the model to `now_s`: pilot limits, cars, registers, states, sampling."""
        dt_s = now_s - self.now_s
        self.now_s, self.now_utc = now_s, now_utc
        while self._timed and self._timed[0][0] <= now_s:
            _, action = self._timed.pop(0)
            action()
        self._offer_limits()
        for conn in self.connectors:
            car = conn.car
            if car is None:
                continue
            car.set_pilot(conn.pilot_a, now_s)
            step_wh = car.advance(now_s)
            conn.register_wh += step_wh
            conn.current_a = car.current_a
            # The step's energy-equivalent current: what the grid carried on average over the step.
            conn.mean_current_a = (
                step_wh * 3600.0 / (car.power_per_amp_w * dt_s) if dt_s > 0 else conn.current_a
            )
            conn.terminal_a = tuple(conn.current_a * k for k in conn.terminal_per_amp)
            conn.power_w = conn.current_a * car.power_per_amp_w
            if conn.remote is not None and conn.remote[1] < now_s:
                conn.remote = None
            self._update_status(conn)
        for conn in self.connectors:
            if conn.car is None and conn.remote is not None and conn.remote[1] < now_s:
                conn.remote = None
        self._sample(now_s, now_utc)

    def _offer_limits(self) -> None:
        if self.rebooting:
            for conn in self.connectors:
                conn.pilot_a = 0.0
            return
        cap = self.profiles.max_limit_a(self.now_utc, self.power_per_amp_w)
        remaining = math.inf if cap is None else cap
        for conn in self.connectors:
            if conn.tx is None or not conn.operative:
                conn.pilot_a = 0.0
                continue
            tx_limit = self.profiles.transaction_limit_a(
                conn.id, self.now_utc, conn.tx.start_utc, self._tx_key(conn.tx), self._connector_ppa(conn)
            )
            limit = self.spec.fallback_limit_a if tx_limit is None else tx_limit
            limit = min(limit, self.spec.max_current_a, remaining)
            if limit < self.spec.min_current_a:
                limit = 0.0
            conn.pilot_a = limit
            remaining -= limit

    def _connector_ppa(self, conn: Connector) -> Callable[[int | None], float]:
        """W-to-A conversion for a connector: a period's numberPhases if given, else the phases the
        car in it uses (what the charger measures), else the charger's own."""
        in_use = min(conn.car.spec.phases, self.phases) if conn.car is not None else self.phases
        return lambda phases: self.power_per_amp_w(phases or in_use)

    def _tx_key(self, tx: Transaction) -> str | None:
        """The transaction id a TxProfile names: the CSMS's integer (1.6) or the charger's uuid."""
        if self.version == "1.6":
            return None if tx.server_id is None else str(tx.server_id)
        return tx.local_id

    def _derive_status(self, conn: Connector) -> Status:
        if conn.tx is None:
            if not conn.operative:
                return "Unavailable"
            if conn.car is None:
                return "Available"
            return "Finishing" if conn.finishing else "Preparing"
        if conn.pilot_a <= 0:
            return "SuspendedEVSE"
        if conn.car is None or not conn.car.wants_energy:
            return "SuspendedEV"
        return "Charging"

    def _update_status(self, conn: Connector) -> None:
        new = self._derive_status(conn)
        if new == conn.status:
            return
        old, conn.status = conn.status, new
        self.log.debug("connector_status", connector=conn.id, old=old, new=new)
        self._status_changed(conn, old)

    def _authorize_and_start(self, conn: Connector, id_tag: str) -> None:
        if not self.networked:
            self._start_transaction(conn, id_tag)
            return
        if not self.online:
            if self.settings.local_authorize_offline:
                self._start_transaction(conn, id_tag)
            return
        conn.authorizing = True

        def accepted(ok: bool) -> None:
            conn.authorizing = False
            if ok and conn.car is not None and conn.tx is None and conn.id_tag == id_tag:
                self._start_transaction(conn, id_tag)
                self._update_status(conn)

        self._authorize(id_tag, accepted)

    def _start_transaction(self, conn: Connector, id_tag: str, remote_start_id: int | None = None) -> None:
        conn.tx = Transaction(
            connector=conn.id,
            id_tag=id_tag,
            start_utc=self.now_utc,
            meter_start_wh=conn.register_wh,
            remote_start_id=remote_start_id,
        )
        conn.id_tag = id_tag
        conn.next_sample_s = (
            self.now_s + self.settings.sample_interval_s if self.settings.sample_interval_s > 0 else math.inf
        )
        self.log.info("transaction_started", connector=conn.id, id_tag=id_tag)
        self._offer_limits()
        self._tx_started(conn, conn.tx)

    def _stop_transaction(self, conn: Connector, reason: StopReason) -> None:
        tx = conn.tx
        if tx is None:
            return
        tx.ended = True
        conn.tx = None
        conn.pilot_a = 0.0
        conn.finishing = conn.car is not None
        self.profiles.end_transaction(conn.id)
        self.log.info(
            "transaction_stopped", connector=conn.id, reason=reason, wh=conn.register_wh - tx.meter_start_wh
        )
        self._tx_ended(conn, tx, reason)

    def _sample(self, now_s: float, now_utc: datetime) -> None:
        for conn in self.connectors:
            if conn.tx is not None and now_s >= conn.next_sample_s:
                self._meter_values(conn, conn.tx, "Sample.Periodic", self.settings.sampled_measurands)
                step = self.settings.sample_interval_s
                conn.next_sample_s = now_s + step if step > 0 else math.inf
        if self.networked and self.online:
            if now_s >= self._next_aligned_s:
                for conn in self.connectors:
                    self._meter_values(conn, conn.tx, "Sample.Clock", self.settings.aligned_measurands)
                self._schedule_aligned()
            if now_s >= self._next_heartbeat_s:
                self.enqueue(Outgoing("Heartbeat", dict))
                self._next_heartbeat_s = now_s + self.settings.heartbeat_interval_s

    def _schedule_aligned(self) -> None:
        interval = self.settings.aligned_interval_s
        if interval <= 0:
            self._next_aligned_s = math.inf
            return
        midnight = self.now_utc.replace(hour=0, minute=0, second=0, microsecond=0)
        since = (self.now_utc - midnight).total_seconds()
        self._next_aligned_s = self.now_s + (math.floor(since / interval) + 1) * interval - since

    def after(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` at the first step at or after now + delay (simulated time)."""
        self._timed.append((self.now_s + delay_s, action))
        self._timed.sort(key=lambda item: item[0])

    def sampled_value(self, conn: Connector, measurand: str) -> list[tuple[float, str | None, str]]:
        """(value, phase, unit) readings of one measurand at the charger's own terminals."""
        if measurand == "Energy.Active.Import.Register":
            return [(round(conn.register_wh, 1), None, "Wh")]
        if measurand == "Power.Active.Import":
            return [(round(conn.power_w, 1), None, "W")]
        if measurand == "Current.Import":
            currents = conn.terminal_a or tuple(0.0 for _ in self.spec.lines)
            return [(round(a, 2), f"L{i + 1}", "A") for i, a in enumerate(currents)]
        if measurand == "Current.Offered":
            return [(round(conn.pilot_a, 1), None, "A")]
        if measurand == "Voltage":
            return [(self.nominal_voltage_v, f"L{i + 1}", "V") for i in range(len(self.spec.lines))]
        if measurand == "SoC" and conn.car is not None:
            return [(round(conn.car.soc * 100, 1), None, "Percent")]
        return []

    # ================================================================== faults (called by the garage)
    def disconnect(self, duration_s: float) -> None:
        """Drop the websocket and stay away for `duration_s` (a network outage)."""
        self._offline_until_s = self.now_s + duration_s
        self.log.info("fault_disconnect", duration_s=duration_s)
        self._close_link()

    def power_cycle(self, reason: StopReason = "PowerLoss") -> None:
        """Lose power for a moment (or reset): boot again after the charger's reboot time."""
        self.power_off(reason)
        self.restore_power()

    def restore_power(self) -> None:
        """Supply returns now; the charger is up again after its reboot time."""
        self._rebooting_until_s = self.now_s + self.spec.reboot_s
        self.after(self.spec.reboot_s, self.power_on)

    def power_off(self, reason: StopReason = "PowerLoss") -> None:
        """No supply (a tripped fuse above it): transactions end, their messages queue, the link drops.

        The cars' current stops at once: without supply there is nothing to draw (and a meter
        without supply counts nothing), unlike a pilot change a car answers after its delay.
        """
        for conn in self.connectors:
            if conn.car is not None:
                conn.register_wh += conn.car.advance(self.now_s)  # nothing when stepped to now
                conn.car.cut_supply()
                conn.current_a, conn.mean_current_a, conn.power_w = 0.0, 0.0, 0.0
                conn.terminal_a = tuple(0.0 for _ in self.spec.lines)
            if conn.tx is not None:
                self._stop_transaction(conn, reason)
            conn.pilot_a = 0.0
            conn.remote = None
            self._update_status(conn)
        self._rebooting_until_s = math.inf
        self._boot_reason = "PowerUp" if reason == "PowerLoss" else "RemoteReset"
        self.log.info("power_off", reason=reason)
        self._close_link()

    def power_on(self) -> None:
        """Supply is back: cars still plugged in charge again with the tag they presented."""
        self._rebooting_until_s = -math.inf
        self._link_wake.set()
        self.log.info("power_on")
        for conn in self.connectors:
            if conn.car is not None and conn.tx is None and conn.id_tag is not None:
                conn.finishing = False
                self._authorize_and_start(conn, conn.id_tag)
            self._update_status(conn)

    @property
    def powered(self) -> bool:
        return self._rebooting_until_s != math.inf

    def _close_link(self) -> None:
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close(), name=f"close-{self.spec.identity}")

    # ================================================================== link (asynchronous)
    def enqueue(self, item: Outgoing) -> None:
        if not self.networked:
            return
        if not self.online and not item.transactional:
            return
        item.offline = not self.online
        self._outbox.append(item)
        self._wake.set()

    @property
    def queued_transaction_messages(self) -> int:
        return sum(1 for item in self._outbox if item.transactional)

    def url(self) -> str:
        assert self.csms_url is not None
        return f"{self.csms_url.rstrip('/')}/{self.spec.identity}"

    async def run(self) -> None:
        """Stay connected to the CSMS until cancelled."""
        if self.csms_url is None:
            raise RuntimeError(f"{self.spec.identity}: no CSMS url")
        while True:
            wait_s = max(self._offline_until_s, self._rebooting_until_s) - self.clock.monotonic()
            if wait_s > 0:
                self.link = LinkState.REBOOTING if self.rebooting else LinkState.OFFLINE
                self._link_wake.clear()
                limit = None if math.isinf(wait_s) else self.clock.loop_seconds(wait_s)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(limit):
                        await self._link_wake.wait()
                continue
            try:
                await self._connect_once()
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                self.log.info("link_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._on_link_lost()
            if self.clock.monotonic() >= max(self._offline_until_s, self._rebooting_until_s):
                await self.clock.sleep(self.spec.reconnect_s)

    def _headers(self) -> dict[str, str]:
        if self.spec.password is None:
            return {}
        token = base64.b64encode(f"{self.spec.identity}:{self.spec.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _connect_once(self) -> None:
        async with connect(
            self.url(),
            subprotocols=[SUBPROTOCOL[self.version]],  # type: ignore[list-item]
            additional_headers=self._headers(),
            ssl=self.ssl_context if self.url().startswith("wss://") else None,
            open_timeout=self.clock.loop_seconds(self.spec.response_timeout_s),
            ping_interval=None,
            close_timeout=1.0,
        ) as ws:
            if ws.subprotocol != SUBPROTOCOL[self.version]:
                self.log.warning("subprotocol_refused", offered=SUBPROTOCOL[self.version], got=ws.subprotocol)
                return
            self._ws = ws
            self.link = LinkState.CONNECTED
            self.counters["connects"] += 1
            self.log.info("link_up", url=self.url())
            session = asyncio.create_task(self._session(), name=f"session-{self.spec.identity}")
            try:
                await self._receive(ws)
            except asyncio.CancelledError:
                # Shut down cleanly (1001 going away) rather than as an internal error.
                await ws.close(1001, "charger stopped")
                raise
            finally:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session

    def _on_link_lost(self) -> None:
        if self._ws is not None:
            self.log.info("link_down")
        self._ws = None
        self.link = LinkState.OFFLINE
        for future in self._pending_calls.values():
            if not future.done():
                future.cancel()
        self._pending_calls.clear()
        # What is not a transaction message is stale by the time the link is back.
        kept = [item for item in self._outbox if item.transactional]
        for item in kept:
            item.offline = True
        self._outbox = deque(kept)
        self._next_heartbeat_s = math.inf
        self._next_aligned_s = math.inf
        # An Authorize lost with the link: decide locally, as the driver would not swipe again.
        for conn in self.connectors:
            if conn.authorizing and conn.tx is None and conn.car is not None and conn.id_tag is not None:
                conn.authorizing = False
                if self.settings.local_authorize_offline and self.powered:
                    self._start_transaction(conn, conn.id_tag)
                    self._update_status(conn)

    async def _receive(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for text in ws:
                self.counters["frames_in"] += 1
                if self.network_delay_s > 0:
                    await self.clock.sleep(self.network_delay_s)
                await self._dispatch(ws, text)

    async def _dispatch(self, ws: ClientConnection, text: str | bytes) -> None:
        try:
            frame = decode(text)
        except FrameError as exc:
            self.counters["frames_bad"] += 1
            self.log.warning("bad_frame", error=str(exc))
            await self._send_frame(
                ws, CallError(exc.unique_id or "-1", framing_error(self.version), str(exc))
            )
            return
        if isinstance(frame, Call):
            try:
                reply: CallResult | CallError = CallResult(
                    frame.unique_id, self.handle_call(frame.action, frame.payload)
                )
            except OcppError as exc:
                self.counters["call_errors_sent"] += 1
                reply = CallError(frame.unique_id, exc.code, exc.description, exc.details)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.counters["call_errors_sent"] += 1
                code = "FormationViolation" if self.version == "1.6" else "FormatViolation"
                reply = CallError(frame.unique_id, code, f"{type(exc).__name__}: {exc}")
            await self._send_frame(ws, reply)
            self.after_reply(frame.action)
            return
        future = self._pending_calls.pop(frame.unique_id, None)
        if future is None or future.done():
            self.log.warning("unexpected_reply", unique_id=frame.unique_id)
            return
        future.set_result(frame.payload if isinstance(frame, CallResult) else frame)

    async def _send_frame(self, ws: ClientConnection, frame: Call | CallResult | CallError) -> None:
        if self.network_delay_s > 0:
            await self.clock.sleep(self.network_delay_s)
        await ws.send(encode(frame))

    async def call(self, action: str, payload: Payload) -> Payload | CallError:
        """Send one CALL and wait for its answer (TimeoutError after the response timeout)."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        unique_id = str(next(self._ids))
        future: asyncio.Future[Payload | CallError] = asyncio.get_running_loop().create_future()
        self._pending_calls[unique_id] = future
        try:
            await self._send_frame(ws, Call(unique_id, action, payload))
            async with asyncio.timeout(self.clock.loop_seconds(self.spec.response_timeout_s)):
                return await future
        finally:
            self._pending_calls.pop(unique_id, None)

    async def _session(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            await self._boot()
            self.link = LinkState.BOOTED
            self._next_heartbeat_s = self.now_s + self.settings.heartbeat_interval_s
            self._schedule_aligned()
            self._resend_status = True
            await self._drain()
        except (websockets.exceptions.ConnectionClosed, ConnectionError, asyncio.CancelledError):
            raise
        except TimeoutError:
            self.log.warning("csms_timeout")
            await ws.close()
        except Exception as exc:  # a bug must not leave a half-dead link: log it and reconnect
            self.log.exception("session_failed", error=str(exc))
            await ws.close()

    async def _boot(self) -> None:
        reason = self._boot_reason
        while True:
            self._boot_now.clear()
            reply = await self.call("BootNotification", self.boot_payload(reason))
            self.counters["boots"] += 1
            if isinstance(reply, CallError):
                self.log.warning("boot_error", code=reply.code)
                await self.clock.sleep(self.spec.reconnect_s)
                continue
            status = reply.get("status")
            interval = reply.get("interval")
            interval_s = float(interval) if isinstance(interval, int | float) and interval > 0 else 60.0
            self.log.info("boot", status=status, interval_s=interval_s)
            if status == "Accepted":
                self.settings.heartbeat_interval_s = interval_s
                self._boot_reason = "PowerUp"
                return
            # Not accepted yet: boot again after the interval, or at once when the CSMS triggers it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.clock.loop_seconds(interval_s)):
                    await self._boot_now.wait()
            if self._boot_now.is_set():
                reason = "Triggered"

    async def _drain(self) -> None:
        while True:
            if self._resend_status:
                self._resend_status = False
                replayed = self.queued_transaction_messages
                self.counters["replayed"] += replayed
                if replayed:
                    self.log.info("replaying", messages=replayed)
                for item in self.status_refresh():
                    self._outbox.append(item)
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._outbox[0]
            reply = await self.call(item.action, item.build())
            if isinstance(reply, CallError):
                self.counters["call_errors_received"] += 1
                item.attempts += 1
                self.log.warning("call_error", action=item.action, code=reply.code, attempt=item.attempts)
                if item.transactional and item.attempts < self.settings.message_attempts:
                    await self.clock.sleep(self.settings.message_retry_interval_s)
                    continue
                self._outbox.popleft()
                continue
            self._outbox.popleft()
            if item.on_result is not None:
                item.on_result(reply)

    def _authorize(self, id_tag: str, done: Callable[[bool], None]) -> None:
        self.enqueue(
            Outgoing(
                "Authorize",
                lambda: self.authorize_payload(id_tag),
                on_result=lambda reply: done(self.authorize_accepted(reply)),
            )
        )

    # ================================================================== dialect hooks
    @abstractmethod
    def boot_payload(self, reason: str) -> Payload: ...

    @abstractmethod
    def authorize_payload(self, id_tag: str) -> Payload: ...

    @abstractmethod
    def authorize_accepted(self, reply: Payload) -> bool: ...

    @abstractmethod
    def status_refresh(self) -> list[Outgoing]:
        """StatusNotifications for every connector, after a (re)connection."""

    @abstractmethod
    def _status_changed(self, conn: Connector, old: Status) -> None: ...

    @abstractmethod
    def _tx_started(self, conn: Connector, tx: Transaction) -> None: ...

    @abstractmethod
    def _tx_ended(self, conn: Connector, tx: Transaction, reason: StopReason) -> None: ...

    @abstractmethod
    def _meter_values(
        self, conn: Connector, tx: Transaction | None, context: str, measurands: list[str]
    ) -> None: ...

    @abstractmethod
    def handle_call(self, action: str, payload: Payload) -> Payload:
        """Answer a CALL from the CSMS; raise OcppError for a CALLERROR."""

    def after_reply(self, action: str) -> None:
        """Run work a handler left for after its reply is on the wire (a reset, a triggered message)."""
        work = self._after_reply.pop(action, None)
        if work is not None:
            work()

    def then(self, action: str, work: Callable[[], None]) -> None:
        self._after_reply[action] = work

    # shared helpers for the dialects
    def set_profile(self, install: Callable[[], None]) -> None:
        """Apply a profile change after the charger's own delay, unless it ignores profiles."""
        self.counters["profiles_set"] += 1
        if self.ignore_profiles:
            return
        if self.spec.profile_delay_s <= 0:
            install()
        else:
            self.after(self.spec.profile_delay_s, install)

    def trigger_boot(self) -> None:
        """TriggerMessage(BootNotification): while the boot is not accepted (Pending) the charger
        boots again at once instead of waiting out the interval; once accepted it sends one more."""
        if self.link == LinkState.CONNECTED:
            self._boot_now.set()
        else:
            self.enqueue(Outgoing("BootNotification", lambda: self.boot_payload("Triggered")))

    def request_reset(self, reason: StopReason) -> None:
        self.power_cycle(reason)

    def remote_start(self, conn: Connector, id_tag: str, remote_start_id: int | None) -> None:
        if conn.car is not None and conn.tx is None:
            if self.settings.authorize_remote_start:
                conn.id_tag = id_tag
                self._authorize_and_start(conn, id_tag)
            else:
                self._start_transaction(conn, id_tag, remote_start_id=remote_start_id)
            self._update_status(conn)
        else:
            conn.remote = (id_tag, self.now_s + self.settings.connection_timeout_s, remote_start_id)

    def _stopper(self, conn: Connector) -> Callable[[], None]:
        return lambda: self.remote_stop(conn)

    def remote_stop(self, conn: Connector) -> None:
        self._stop_transaction(conn, "Remote")
        self._update_status(conn)

    def set_operative(self, conn: Connector, operative: bool) -> None:
        conn.operative = operative
        self._update_status(conn)
