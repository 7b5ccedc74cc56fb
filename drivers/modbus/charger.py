"""A Modbus charger behind the driver contracts: polled status, limits written, fail-safe installed.

The controller cannot tell it from an OCPP charger: it emits `ChargerStatus` and transaction events
and takes `set_current` / `install_safe_limit` (drivers/contracts.py).

- **Provisioning**, at start and after every time it stopped answering: identification read, the
  fail-safe installed and read back (`install_safe_limit`); only then is the charger online and
  takes limits. A charger that is not provisioned reports offline (the site budgets it at its
  maximum) and refuses limits.
- **Leases**: a setpoint holds on the charger only while it is refreshed - by rewriting it (a
  fixed validity, or a written timeout) or by the heartbeat register - which this driver does for
  `lease_s` after the dispatcher's last command, no longer: a controller that stops commanding
  lets the charger fall back within its lease plus the charger's timeout; a dead process within the
  charger's timeout.
- **Bad readings** (an exception response, a value outside the template's range, an energy
  register that goes backwards) are counted and logged with the register and never used: the
  value stays unknown (None), which the site counts as the worst case.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from drivers.contracts import (
    ChargerEventRecorder,
    ChargerEventSink,
    ChargerStatus,
    Clock,
    CommandOutcome,
    CommandResult,
    ConnectorState,
    ReceiveTime,
)
from drivers.modbus.bus import Bus
from drivers.modbus.reading import ReadBlock, decode_block, plan_reads, read_number, write_words
from drivers.modbus.template import TEXT_MEANINGS, DeviceTemplate, FailsafeKind
from drivers.modbus.transactions import ModbusTransactions
from drivers.modbus.transport import ModbusFault

log = structlog.get_logger(__name__)

POLLED = (
    "vehicle_state",
    "current_l1",
    "current_l2",
    "current_l3",
    "power",
    "energy",
    "session_energy",
    "applied_current",
    "rfid",
)
# A register that reads lower than before by more than this went backwards (float rounding aside).
BACKWARDS_WH = 1.0


@dataclass(frozen=True, slots=True)
class ModbusChargerConfig:
    charger_id: str
    unit_id: int
    template: DeviceTemplate
    safe_current_a: float
    max_current_a: float
    phases: int = 3
    nominal_voltage_v: float = 230.0
    poll_interval_s: float = 2.0
    sample_interval_s: float = 10.0
    stale_after_polls: int = 3
    lease_s: float = 60.0


@dataclass(slots=True)
class ChargerCounters:
    polls: int = 0
    failed_polls: int = 0
    bad_values: int = 0
    writes_failed: int = 0
    provisioned: int = 0


@dataclass(slots=True)
class _Reading:
    values: dict[str, float | str] = field(default_factory=dict)
    received: ReceiveTime | None = None


class ModbusCharger:
    def __init__(
        self,
        config: ModbusChargerConfig,
        bus: Bus,
        clock: Clock,
        *,
        sink: ChargerEventSink,
        record: ChargerEventRecorder,
        new_transaction_id: Callable[[], str],
    ) -> None:
        self.config = config
        self.charger_id = config.charger_id
        self._bus = bus
        self._clock = clock
        self._sink = sink
        self._record = record
        template = config.template
        self._blocks = plan_reads(template, [m for m in POLLED if m in template.registers])
        self._identity_blocks = plan_reads(template, [m for m in TEXT_MEANINGS if m in template.registers])
        self.transactions = ModbusTransactions(
            config.charger_id, new_transaction_id, sample_every_s=config.sample_interval_s
        )
        self.provisioned = False
        self.identity: dict[str, str] = {}
        self.counters = ChargerCounters()
        self._failures = 0
        self._last = _Reading()
        self._energy_wh: float | None = None
        self._setpoint_a: float | None = None
        self._commanded_mono = -math.inf  # the dispatcher's last command
        self._refreshed_mono = -math.inf  # the last setpoint write
        self._heartbeat_mono = -math.inf
        self._online_reported: bool | None = None

    # ------------------------------------------------------------------------------ contracts

    async def set_current(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult:
        if not self.provisioned:
            return CommandResult(CommandOutcome.OFFLINE, "not provisioned")
        value_a = max(0.0, min(current_a, self.config.max_current_a))
        try:
            async with asyncio.timeout(self._clock.loop_seconds(timeout_s)):
                await self._write_setpoint(value_a)
        except TimeoutError:
            self.counters.writes_failed += 1
            return CommandResult(CommandOutcome.TIMEOUT, "no answer in time")
        except ModbusFault as fault:
            self.counters.writes_failed += 1
            return CommandResult(CommandOutcome.TIMEOUT, str(fault))
        self._setpoint_a = value_a
        self._commanded_mono = self._clock.monotonic()
        return CommandResult(CommandOutcome.ACCEPTED)

    async def install_safe_limit(self, safe_current_a: float, *, timeout_s: float = 10.0) -> CommandResult:
        """Writes the fail-safe the template describes and reads it back."""
        try:
            async with asyncio.timeout(self._clock.loop_seconds(timeout_s)):
                return await self._install_failsafe(safe_current_a)
        except TimeoutError:
            return CommandResult(CommandOutcome.TIMEOUT, "no answer in time")
        except ModbusFault as fault:
            return CommandResult(CommandOutcome.TIMEOUT, str(fault))

    # ------------------------------------------------------------------------------- running

    async def run(self) -> None:
        """Provision, then poll every `poll_interval_s` (a fixed cadence: a slow poll does not
        stretch it, a poll that overruns it starts the next at once), until cancelled."""
        interval_s = self.config.poll_interval_s
        due = self._clock.monotonic()
        while True:
            if not self.provisioned:
                await self._provision()
            if self.provisioned:
                await self._poll()
                await self._keep_alive()
            now = self._clock.monotonic()
            due = max(due + interval_s, now) if interval_s > 0 else now
            await self._clock.sleep(due - now)

    async def _provision(self) -> None:
        try:
            self.identity = await self._identify()
        except ModbusFault as fault:
            log.info("modbus.charger_unreachable", charger=self.charger_id, fault=str(fault))
            self._report_online(False)
            return
        result = await self.install_safe_limit(self.config.safe_current_a)
        if not result.ok:
            log.warning("modbus.failsafe_not_installed", charger=self.charger_id, detail=result.detail)
            self._report_online(False)
            return
        self.provisioned = True
        self.counters.provisioned += 1
        self._failures = 0
        self._setpoint_a = None  # unknown until the dispatcher sets one (it starts from the safe current)
        log.info("modbus.charger_provisioned", charger=self.charger_id, **self.identity)

    async def _identify(self) -> dict[str, str]:
        unit = self.config.template.device.identification_unit_id or self.config.unit_id
        found: dict[str, str] = {}
        for block in self._identity_blocks:
            words = await self._bus.read(unit, block.table, block.start, block.count)
            values, problems = decode_block(self.config.template, block, words)
            found |= {k: str(v) for k, v in values.items()}
            self._bad(problems)
        return found

    async def _poll(self) -> None:
        self.counters.polls += 1
        values: dict[str, float | str] = {}
        try:
            for block in self._blocks:
                values |= await self._read_block(block)
        except ModbusFault as fault:
            self.counters.failed_polls += 1
            self._failures += 1
            log.debug(
                "modbus.poll_failed", charger=self.charger_id, fault=str(fault), failures=self._failures
            )
            if self._failures >= self.config.stale_after_polls:
                log.warning("modbus.charger_stale", charger=self.charger_id, fault=str(fault))
                self.provisioned = False
                self._report_online(False)
            return
        self._failures = 0
        received = self._received()
        energy = self._checked_energy(values)
        state = values.get("vehicle_state")
        rfid = values.get("rfid")
        id_tag = rfid if isinstance(rfid, str) and rfid else None  # a charger that reads the card
        events = self.transactions.observe(
            state if isinstance(state, str) else None, energy, id_tag, received
        )

        for event in events:
            await self._record(event)
        self._last = _Reading(values, received)
        self._emit(True)

    async def _read_block(self, block: ReadBlock) -> dict[str, float | str]:
        words = await self._bus.read(self.config.unit_id, block.table, block.start, block.count)
        values, problems = decode_block(self.config.template, block, words)
        self._bad(problems)
        return values

    def _checked_energy(self, values: dict[str, float | str]) -> float | None:
        meaning = "energy" if "energy" in self.config.template.registers else "session_energy"
        value = values.get(meaning)
        if not isinstance(value, float):
            return None
        last = self._energy_wh
        fresh_session = meaning == "session_energy" and self.transactions.open is None
        if last is not None and value < last - BACKWARDS_WH and not fresh_session:
            self._bad({meaning: f"{meaning} went backwards from {last:.0f} to {value:.0f} Wh"})
            values.pop(meaning)
            return None
        self._energy_wh = value
        return value

    async def _keep_alive(self) -> None:
        """Refresh the setpoint or the heartbeat while the dispatcher's lease runs."""
        failsafe = self.config.template.failsafe
        now = self._clock.monotonic()
        if failsafe is None or now > self._commanded_mono + self.config.lease_s:
            return
        template = self.config.template
        period_s, timeout_s = failsafe.heartbeat_period_s, failsafe.timeout_s
        try:
            if "heartbeat" in template.registers and period_s is not None:
                if now - self._heartbeat_mono >= period_s:
                    words = write_words(template, "heartbeat", float(failsafe.heartbeat_value))
                    await self._write("heartbeat", words)
                    self._heartbeat_mono = now
                return
            due = timeout_s is not None and now - self._refreshed_mono >= timeout_s / 3
            if due and self._setpoint_a is not None:
                await self._write_setpoint(self._setpoint_a)
        except ModbusFault as fault:
            self.counters.writes_failed += 1
            log.warning("modbus.refresh_failed", charger=self.charger_id, fault=str(fault))

    # ------------------------------------------------------------------------------- writing

    async def _write_setpoint(self, current_a: float) -> None:
        template = self.config.template
        entry = template.registers["set_current"]
        value = current_a
        if entry.unit in ("W", "kW"):
            value = current_a * self.config.nominal_voltage_v * self.config.phases
        if not entry.spec("set_current").is_float:
            # An integer register takes whole steps: the step below, never the one above the limit.
            step = template.to_base_unit("set_current", entry.scale)
            value = math.floor(value / step + 1e-9) * step
        await self._write("set_current", write_words(template, "set_current", value))
        self._refreshed_mono = self._clock.monotonic()

    async def _write(self, meaning: str, words: list[int]) -> None:
        address = self.config.template.registers[meaning].address
        await self._bus.write(self.config.unit_id, address, words)

    async def _install_failsafe(self, safe_current_a: float) -> CommandResult:
        template = self.config.template
        failsafe = template.failsafe
        if failsafe is None or failsafe.kind is FailsafeKind.NONE:
            return CommandResult(CommandOutcome.ACCEPTED, "the charger has no fail-safe")
        if failsafe.kind in (FailsafeKind.REGISTERS, FailsafeKind.TIMEOUT) and failsafe.timeout is not None:
            assert failsafe.timeout_s is not None
            await self._write(failsafe.timeout, write_words(template, failsafe.timeout, failsafe.timeout_s))
            read_s = await self._read_meaning(failsafe.timeout)
            if abs(read_s - failsafe.timeout_s) > 0.5:
                return CommandResult(CommandOutcome.REJECTED, f"timeout reads {read_s:g} s")
        safe = failsafe.safe_current
        if safe is None:
            return CommandResult(CommandOutcome.ACCEPTED)
        if failsafe.kind is FailsafeKind.REGISTERS:
            await self._write(safe, write_words(template, safe, safe_current_a))
        read_a = await self._read_meaning(safe)
        if read_a > safe_current_a + 0.1:
            # A fixed fail-safe set on the charger above the site's safe current: not safe to drive.
            return CommandResult(CommandOutcome.REJECTED, f"safe current reads {read_a:g} A")
        return CommandResult(CommandOutcome.ACCEPTED)

    async def _read_meaning(self, meaning: str) -> float:
        entry = self.config.template.registers[meaning]
        spec = entry.spec(meaning)
        words = await self._bus.read(self.config.unit_id, entry.table, entry.address, spec.count)
        return read_number(self.config.template, meaning, words)

    # ------------------------------------------------------------------------------ reporting

    def _received(self) -> ReceiveTime:
        return ReceiveTime(self._clock.monotonic(), self._clock.utc_now())

    def _bad(self, problems: dict[str, str]) -> None:
        for meaning, reason in problems.items():
            self.counters.bad_values += 1
            log.warning("modbus.bad_value", charger=self.charger_id, register=meaning, reason=reason)

    def _report_online(self, online: bool) -> None:
        if self._online_reported is online:
            return
        self._emit(online)

    def _emit(self, online: bool) -> None:
        self._online_reported = online
        self._sink(self.status(online))

    def status(self, online: bool) -> ChargerStatus:
        values = self._last.values
        state = values.get("vehicle_state")
        currents = tuple(
            value if isinstance(value := values.get(f"current_l{k}"), float) else None for k in (1, 2, 3)
        )
        power = values.get("power")
        applied = values.get("applied_current")
        received = self._last.received
        connector = _connector_state(state if isinstance(state, str) else None, self._setpoint_a)
        return ChargerStatus(
            charger_id=self.charger_id,
            online=online,
            state=connector,
            vehicle_connected=state in ("B", "C", "D"),
            measured_current_a=(currents[0], currents[1], currents[2]),
            energy_register_wh=self._energy_wh,
            power_w=power if isinstance(power, float) else None,
            id_tag=self.transactions.id_tag,
            transaction_id=self.transactions.transaction_id,
            applied_limit_a=applied if isinstance(applied, float) else self._setpoint_a,
            last_seen=received,
            currents_received=received if any(c is not None for c in currents) else None,
        )


def _connector_state(iec: str | None, setpoint_a: float | None) -> ConnectorState:
    """IEC 61851-1 state as the connector states the controller knows. A car plugged in that draws
    nothing waits for the charger (SuspendedEVSE) while its limit is unknown or 0, and is not taking
    what it was given (SuspendedEV) otherwise."""
    if iec is None:
        return ConnectorState.UNKNOWN
    if iec == "A":
        return ConnectorState.AVAILABLE
    if iec == "B":
        return ConnectorState.SUSPENDED_EVSE if not setpoint_a else ConnectorState.SUSPENDED_EV
    if iec in ("C", "D"):
        return ConnectorState.CHARGING
    return ConnectorState.FAULTED
