"""Telemetry: typed values in, rate-limited MQTT messages out, with message expiry.

- site: every `site_telemetry_every_s` (10 s), QoS 0, expiry `site_telemetry_expiry_s`;
- chargers: all of them every `charger_telemetry_every_s` (60 s), and the ones whose state,
  online flag or setpoint changed as soon as `charger_telemetry_min_gap_s` has passed since the
  last charger message (changes in between are coalesced); QoS 1 with expiry on MQTT 5, QoS 0 on
  3.1.1 (which has no expiry, so a queued message could be replayed stale).

Measured currents and energy change with every reading; they ride on the periodic messages so a
busy site does not flood the uplink. Nothing is queued while offline: telemetry is only current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.contracts import LINES, Clock

from .config import UplinkConfig
from .connection import Publisher, dumps
from .topics import CHARGER_TELEMETRY_SCHEMA, SITE_TELEMETRY_SCHEMA, Topics

PerLine = tuple[float | None, float | None, float | None]
"""Values for grid lines L1, L2, L3; None where unknown."""


@dataclass(frozen=True, slots=True)
class SiteTelemetry:
    measured_utc: datetime
    state: str  # e.g. "normal", "failsafe", "meter_stale"
    currents_a: PerLine  # measured at the main fuse
    limits_a: PerLine  # the main fuse's limit less the safety margin
    headroom_a: PerLine
    ev_currents_a: PerLine  # the chargers' share of the line currents
    ev_power_w: float | None = None
    chargers_charging: int = 0


@dataclass(frozen=True, slots=True)
class ChargerTelemetry:
    charger_id: str
    online: bool
    state: str  # drivers.contracts.ConnectorState value
    current_a: PerLine  # per terminal phase 1, 2, 3 as the charger reports it
    setpoint_a: float | None
    energy_register_wh: float | None
    session_energy_wh: int | None = None
    space: str | None = None  # the parking space: how a session without an id tag is billed

    def change_key(self) -> tuple[bool, str, float | None]:
        return (self.online, self.state, self.setpoint_a)


def _lines(values: PerLine) -> dict[str, float | None]:
    return dict(zip(LINES, values, strict=True))


def site_payload(site: SiteTelemetry, site_id: str) -> dict[str, Any]:
    return {
        "schema": SITE_TELEMETRY_SCHEMA,
        "site_id": site_id,
        "measured_utc": site.measured_utc.isoformat().replace("+00:00", "Z"),
        "state": site.state,
        "currents_a": _lines(site.currents_a),
        "limits_a": _lines(site.limits_a),
        "headroom_a": _lines(site.headroom_a),
        "ev_currents_a": _lines(site.ev_currents_a),
        "ev_power_w": site.ev_power_w,
        "chargers_charging": site.chargers_charging,
    }


def chargers_payload(
    chargers: Sequence[ChargerTelemetry], site_id: str, sent_utc: datetime, *, full: bool
) -> dict[str, Any]:
    return {
        "schema": CHARGER_TELEMETRY_SCHEMA,
        "site_id": site_id,
        "sent_utc": sent_utc.isoformat().replace("+00:00", "Z"),
        "full": full,
        "chargers": [
            {
                "id": c.charger_id,
                "online": c.online,
                "state": c.state,
                "current_a": list(c.current_a),
                "setpoint_a": c.setpoint_a,
                "energy_register_wh": c.energy_register_wh,
                "session_energy_wh": c.session_energy_wh,
                "space": c.space,
            }
            for c in chargers
        ],
    }


class TelemetrySchedule:
    """When to send what: pure bookkeeping over a monotonic time, shared by the publisher and bench/."""

    def __init__(self, config: UplinkConfig) -> None:
        self._config = config
        self.site: SiteTelemetry | None = None
        self.chargers: dict[str, ChargerTelemetry] = {}
        self._sent_keys: dict[str, tuple[bool, str, float | None]] = {}
        self._changed: set[str] = set()
        self._next_site_s: float | None = None
        self._next_full_s: float | None = None
        self._last_chargers_s: float | None = None

    def update_site(self, site: SiteTelemetry) -> None:
        self.site = site

    def update_charger(self, charger: ChargerTelemetry) -> bool:
        """Store the latest value; True if it is a change worth an early message."""
        self.chargers[charger.charger_id] = charger
        if self._sent_keys.get(charger.charger_id) != charger.change_key():
            self._changed.add(charger.charger_id)
        else:
            self._changed.discard(charger.charger_id)
        return bool(self._changed)

    def restart(self, now_s: float) -> None:
        """A new connection: send everything now."""
        self._next_site_s = now_s
        self._next_full_s = now_s
        self._last_chargers_s = None

    def due(self, now_s: float) -> tuple[bool, list[ChargerTelemetry] | None, bool]:
        """(send site?, chargers to send or None, is it the full list?) at `now_s`; marks them sent."""
        cfg = self._config
        send_site = False
        if self.site is not None and self._next_site_s is not None and now_s >= self._next_site_s:
            send_site = True
            self._next_site_s = now_s + cfg.site_telemetry_every_s
        batch: list[ChargerTelemetry] | None = None
        full = False
        if self.chargers and self._next_full_s is not None and now_s >= self._next_full_s:
            batch, full = sorted(self.chargers.values(), key=lambda c: c.charger_id), True
            self._next_full_s = now_s + cfg.charger_telemetry_every_s
        elif self._changed and (
            self._last_chargers_s is None or now_s - self._last_chargers_s >= cfg.charger_telemetry_min_gap_s
        ):
            batch = [self.chargers[i] for i in sorted(self._changed)]
        if batch is not None:
            self._last_chargers_s = now_s
            for c in batch:
                self._sent_keys[c.charger_id] = c.change_key()
                self._changed.discard(c.charger_id)
        return send_site, batch, full

    def next_wake_s(self, now_s: float) -> float:
        """Seconds until something may be due, assuming no new change arrives."""
        cfg = self._config
        times: list[float] = []
        if self.site is not None and self._next_site_s is not None:
            times.append(self._next_site_s)
        if self.chargers and self._next_full_s is not None:
            times.append(self._next_full_s)
        if self._changed and self._last_chargers_s is not None:
            times.append(self._last_chargers_s + cfg.charger_telemetry_min_gap_s)
        elif self._changed:
            times.append(now_s)
        return max(0.0, min(times) - now_s) if times else cfg.site_telemetry_every_s


class TelemetryPublisher:
    """Hand it the latest values at any rate; it publishes on its own schedule while connected."""

    def __init__(self, topics: Topics, clock: Clock, config: UplinkConfig) -> None:
        self._topics = topics
        self._clock = clock
        self._config = config
        self._schedule = TelemetrySchedule(config)
        self._wake = asyncio.Event()
        self.messages_sent = 0
        self.bytes_sent = 0

    def update_site(self, site: SiteTelemetry) -> None:
        first = self._schedule.site is None
        self._schedule.update_site(site)
        if first:
            self._wake.set()

    def update_charger(self, charger: ChargerTelemetry) -> None:
        if self._schedule.update_charger(charger):
            self._wake.set()

    async def run(self, pub: Publisher) -> None:
        cfg = self._config
        self._schedule.restart(self._clock.monotonic())
        charger_qos = 1 if pub.mqtt5 else 0
        while True:
            self._wake.clear()
            now_s = self._clock.monotonic()
            send_site, batch, full = self._schedule.due(now_s)
            site = self._schedule.site
            if send_site and site is not None:
                data = dumps(site_payload(site, self._topics.site_id))
                await pub.publish(
                    self._topics.site_telemetry, data, qos=0, expiry_s=cfg.site_telemetry_expiry_s
                )
                self._count(data)
            if batch:
                payload = chargers_payload(batch, self._topics.site_id, self._clock.utc_now(), full=full)
                data = dumps(payload)
                await pub.publish(
                    self._topics.charger_telemetry,
                    data,
                    qos=charger_qos,
                    expiry_s=cfg.charger_telemetry_expiry_s,
                )
                self._count(data)
            wait_s = self._schedule.next_wake_s(self._clock.monotonic())
            if wait_s <= 0:
                await asyncio.sleep(0)
                continue
            try:
                async with asyncio.timeout(self._clock.loop_seconds(wait_s)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _count(self, data: bytes) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(data)
