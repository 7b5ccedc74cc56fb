"""Handlers both OCPP versions answer alike: the messages the CSMS only acknowledges."""

from __future__ import annotations

from typing import Any

import structlog

from drivers.ocpp import profiles
from drivers.ocpp.station import Station

log = structlog.get_logger("drivers.ocpp")


class CommonHandlers:
    def __init__(self, station: Station) -> None:
        self.station = station

    def _now(self) -> str:
        return profiles.ocpp_time(self.station.services.clock.utc_now())

    def data_transfer(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.touch()
        return {"status": "UnknownVendorId"}

    def empty(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.touch()
        return {}

    def security_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        log.warning(
            "ocpp.charger_security_event",
            identity=self.station.identity,
            type=payload.get("type"),
            info=str(payload.get("techInfo", ""))[:200],
        )
        return {}
