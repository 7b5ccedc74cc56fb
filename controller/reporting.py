"""Each control cycle as telemetry values and state-change events for the uplink and the logs.

Events are raised on changes only (fail-safe entered or left, a charger going offline or coming
back, a meter measuring a fuse line above its rating), so a lasting condition is one event, not one
per cycle. The fail-safe of the first seconds after start, before the meter's first full list, is
expected and raises nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from controller.loop import Cycle
from controller.site.snapshot import SiteState
from controller.uplink import ChargerTelemetry, SiteTelemetry
from drivers.contracts import LINES

log = structlog.get_logger("reporting")

EventSink = Callable[..., Any]


class CycleReporter:
    def __init__(
        self,
        site: SiteState,
        *,
        root_fuse: str,
        safety_margin_a: float,
        on_site: Callable[[SiteTelemetry], None] | None = None,
        on_charger: Callable[[ChargerTelemetry], None] | None = None,
        on_event: EventSink | None = None,
        startup_grace_s: float = 30.0,
    ) -> None:
        self._site = site
        self._root = root_fuse
        self._margin_a = safety_margin_a
        self._on_site = on_site
        self._on_charger = on_charger
        self._on_event = on_event
        self._failsafe: str | None = None
        self._online: dict[str, bool] = {}
        self._overloaded: frozenset[str] = frozenset()
        self._startup_grace_s = startup_grace_s
        self._first_mono: float | None = None
        self.events = 0

    def __call__(self, cycle: Cycle) -> None:
        self._events(cycle)
        if self._on_site is not None:
            self._on_site(self.site_telemetry(cycle))
        if self._on_charger is not None:
            for charger_id in self._site.charger_ids():
                telemetry = self.charger_telemetry(cycle, charger_id)
                if telemetry is not None:
                    self._on_charger(telemetry)

    def site_telemetry(self, cycle: Cycle) -> SiteTelemetry:
        snapshot, allocation = cycle.snapshot, cycle.allocation
        root = allocation.fuses[self._root]
        limit_a = root.limit_a - self._margin_a
        meter = next((m for m in snapshot.meters if m.fuse == self._root), None)
        measured = meter.currents_a if meter is not None else (None, None, None)
        ev = [0.0, 0.0, 0.0]
        for charger in snapshot.chargers:
            if charger.vehicle is None:
                continue
            for k, value in enumerate(charger.vehicle.drawing_a):
                ev[k] += value or 0.0
        charging = sum(1 for d in allocation.chargers.values() if d.state == "charging")
        state = "failsafe" if allocation.failsafe else "normal"
        return SiteTelemetry(
            measured_utc=snapshot.now,
            state=state,
            currents_a=measured,
            limits_a=(limit_a, limit_a, limit_a),
            headroom_a=(
                limit_a - root.predicted_a[0],
                limit_a - root.predicted_a[1],
                limit_a - root.predicted_a[2],
            ),
            ev_currents_a=(ev[0], ev[1], ev[2]),
            chargers_charging=charging,
        )

    def charger_telemetry(self, cycle: Cycle, charger_id: str) -> ChargerTelemetry | None:
        status = self._site.status(charger_id)
        decision = cycle.allocation.chargers.get(charger_id)
        if status is None:
            return None
        return ChargerTelemetry(
            charger_id=charger_id,
            online=status.online,
            state=str(status.state),
            current_a=status.measured_current_a,
            setpoint_a=None if decision is None else decision.current_a,
            energy_register_wh=status.energy_register_wh,
            space=self._site.space(charger_id),
        )

    def _events(self, cycle: Cycle) -> None:
        allocation = cycle.allocation
        if self._first_mono is None:
            self._first_mono = cycle.started_mono
        starting = cycle.started_mono - self._first_mono < self._startup_grace_s
        if allocation.failsafe is not None and self._failsafe is None and starting:
            pass  # no meter list yet right after start: expected, not an alarm
        elif allocation.failsafe != self._failsafe:
            if allocation.failsafe is not None:
                self._emit("failsafe", "critical", reason=allocation.failsafe)
            else:
                self._emit("failsafe_cleared", "info", reason=self._failsafe)
            self._failsafe = allocation.failsafe
        for charger in cycle.snapshot.chargers:
            was = self._online.get(charger.id)
            self._online[charger.id] = charger.online
            if was is not None and was != charger.online:
                self._emit(
                    "charger_online" if charger.online else "charger_offline",
                    "info" if charger.online else "warning",
                    charger_id=charger.id,
                )
        # An overload is what a meter measures above a fuse's rating, not a prediction: predictions
        # count silent chargers at their maximum and would cry wolf.
        limits = {f.id: f.limit_a for f in cycle.snapshot.fuses}
        overloaded = frozenset(
            f"fuse:{meter.fuse}:{line}"
            for meter in cycle.snapshot.meters
            for line, value in zip(LINES, meter.currents_a, strict=True)
            if value is not None and value > limits[meter.fuse]
        )
        for label in sorted(overloaded - self._overloaded):
            self._emit("overload", "critical", line=label)
        for label in sorted(self._overloaded - overloaded):
            self._emit("overload_cleared", "info", line=label)
        self._overloaded = overloaded

    def _emit(self, kind: str, severity: str, **fields: Any) -> None:
        self.events += 1
        log.warning("site.event", kind=kind, severity=severity, **fields)
        if self._on_event is not None:
            self._on_event(kind, severity, **fields)
