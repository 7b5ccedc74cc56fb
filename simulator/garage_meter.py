"""The virtual AMS meter wired to the garage: ground truth at the meter's fuse node, on a real pty or
TCP port, with the scenario's meter faults on the same timeline as the garage.

The meter samples `garage.node_truth(fuse)` when each frame is due, so its currents, powers and
energy registers are the garage's own (a CT meter sends them divided by its ratio; see
`MeterProfile.ct_ratio`). `energy_import_start_wh` stands for the register a real meter has
accumulated before the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from simulator.clock import SimClock
from simulator.han_meter import (
    Fault,
    FaultInjector,
    FlipBits,
    Freeze,
    Garbage,
    MeterProfile,
    MeterState,
    Output,
    PtyOutput,
    SentFrame,
    SerialOutput,
    Silence,
    TcpOutput,
    Vendor,
    VirtualMeter,
    default_profile,
)
from simulator.meter_feed import meter_state_kwargs
from simulator.physics.network import NodeTruth
from simulator.scenario_file import MeterFaultSpec, MeterSim


def meter_profile(meter: MeterSim) -> MeterProfile:
    profile = default_profile(Vendor(meter.vendor), meter.phases, meter.grid, meter.ct_ratio)
    return replace(
        profile,
        meter_id=meter.meter_id or profile.meter_id,
        model=meter.model or profile.model,
        legacy_firmware=meter.legacy_firmware,
    )


def meter_fault(spec: MeterFaultSpec) -> Fault:
    if spec.kind == "meter_silence":
        return Silence(spec.duration_s)
    if spec.kind == "meter_freeze":
        return Freeze(spec.duration_s)
    if spec.kind == "meter_garbage":
        return Garbage(n_bytes=spec.garbage_bytes, frames=spec.frames)
    return FlipBits(bits=spec.bits, frames=spec.frames)


def meter_state(truth: NodeTruth, energy_import_start_wh: float = 0.0) -> MeterState:
    """The meter's input from a node's ground truth (primary side)."""
    state = MeterState(**meter_state_kwargs(truth))  # type: ignore[arg-type]
    if energy_import_start_wh:
        state = replace(state, energy_import_wh=state.energy_import_wh + energy_import_start_wh)
    return state


class GarageMeter:
    """A VirtualMeter on a pty (or TCP) fed by `truth()`; an async context manager that opens the
    output. `run()` sends frames until cancelled; `schedule_faults(t0_utc)` puts the scenario's meter
    faults on the garage's timeline once the garage knows its start."""

    def __init__(
        self,
        meter: MeterSim,
        truth: Callable[[], NodeTruth],
        clock: SimClock,
        *,
        seed: int = 0,
        link: Path | None = None,
        tcp: tuple[str, int] | None = None,
        serial_device: str | None = None,
        on_frame: Callable[[SentFrame], None] | None = None,
    ) -> None:
        self.meter = meter
        self.profile = meter_profile(meter)
        self.faults = FaultInjector(seed)
        self._truth = truth
        self._link = link if link is not None else meter.link
        self._tcp = tcp if tcp is not None else (meter.tcp_host, meter.tcp_port)
        self._use_tcp = tcp is not None or (link is None and meter.output == "tcp")
        self.output: Output
        if serial_device is not None:
            # The vendors' line settings: Kamstrup 8N1, the others 8E1.
            parity = "N" if meter.vendor == "kamstrup" else "E"
            self.output = SerialOutput(serial_device, parity=parity)
        elif self._use_tcp:
            self.output = TcpOutput(*self._tcp)
        else:
            self.output = PtyOutput(self._link)
        self.virtual = VirtualMeter(
            self.profile, self.state, clock, self.output, self.faults, on_frame=on_frame
        )

    def state(self) -> MeterState:
        return meter_state(self._truth(), self.meter.energy_import_start_wh)

    async def __aenter__(self) -> Self:
        if isinstance(self.output, TcpOutput):
            await self.output.start()
        elif isinstance(self.output, PtyOutput):
            self.output.replug()
        elif isinstance(self.output, SerialOutput):
            self.output.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.output.aclose()

    @property
    def port(self) -> str:
        """What a HAN reader opens: the pty's stable link (or its slave path), socket://host:port, or
        the serial device the frames are written to (the reader is on the other end of the cable)."""
        if isinstance(self.output, TcpOutput):
            return f"socket://{self.output.host}:{self.output.port}"
        if isinstance(self.output, SerialOutput):
            return self.output.device
        assert isinstance(self.output, PtyOutput)
        return str(self.output.link_path) if self.output.link_path is not None else self.output.slave_path

    @property
    def device(self) -> str | None:
        """The pty slave device behind the link (None on TCP)."""
        return self.output.slave_path if isinstance(self.output, PtyOutput) else None

    def schedule_faults(self, faults: tuple[MeterFaultSpec, ...], t0_utc: datetime) -> None:
        for spec in faults:
            self.faults.schedule(t0_utc + timedelta(seconds=spec.at_s), meter_fault(spec))

    async def run(self) -> None:
        await self.virtual.run()

    def counters(self) -> dict[str, object]:
        meter = self.virtual
        return {
            "frames_sent": {str(int(k)): v for k, v in sorted(meter.frames_sent.items())},
            "frames_silenced": meter.frames_silenced,
            "slots_skipped": meter.slots_skipped,
            "bytes_sent": meter.bytes_sent,
            "faults_injected": dict(self.faults.injected),
        }
