"""Virtual OCPP chargers (1.6J and 2.0.1) with cars attached, speaking OCPP-J over real websockets."""

from __future__ import annotations

import ssl

from simulator.chargers.base import Connector, LinkState, Transaction, VirtualCharger
from simulator.chargers.ocpp16 import Charger16
from simulator.chargers.ocpp201 import Charger201
from simulator.chargers.spec import ChargerSpec, Settings
from simulator.clock import SimClock
from simulator.physics.phasors import Grid


def make_charger(
    spec: ChargerSpec,
    *,
    grid: Grid,
    nominal_voltage_v: float,
    clock: SimClock,
    csms_url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> VirtualCharger:
    """The charger of `spec.version`; without `csms_url` it runs offline (physics only)."""
    cls = Charger16 if spec.version == "1.6" else Charger201
    return cls(
        spec,
        grid=grid,
        nominal_voltage_v=nominal_voltage_v,
        clock=clock,
        csms_url=csms_url,
        ssl_context=ssl_context,
    )


__all__ = [
    "Charger16",
    "Charger201",
    "ChargerSpec",
    "Connector",
    "LinkState",
    "Settings",
    "Transaction",
    "VirtualCharger",
    "make_charger",
]
