"""Virtual Modbus sub-meters, laid out as their vendors' documents describe them."""

from __future__ import annotations

from simulator.modbus.chargers import f32_words
from simulator.modbus.frames import Bank
from simulator.modbus.server import Unit


class EastronSdm630:
    """Eastron SDM630: input registers of IEEE floats, high word first, from address 0 (voltages
    0x00-0x05, currents 0x06-0x0B, ... total power 0x34, import energy 0x48); serial number in
    holding register 0xFC00."""

    model = "eastron_sdm630"

    def __init__(self, unit_id: int = 1, serial: int = 21_000_123) -> None:
        self.unit_id = unit_id
        self.currents_a = (0.0, 0.0, 0.0)
        self.voltages_v = (230.0, 230.0, 230.0)
        self.energy_kwh = 0.0
        self.bank = Bank()
        self.bank.set_words("holding", 0xFC00, [serial >> 16, serial & 0xFFFF])
        self.publish()

    def publish(self) -> None:
        words: list[int] = []
        for value in (*self.voltages_v, *self.currents_a):
            words += f32_words(value)
        power_w = sum(v * a for v, a in zip(self.voltages_v, self.currents_a, strict=True))
        # The input table answers for every address from 0 to 0x4F, as the meter's does.
        table = (
            words
            + [0] * (0x34 - len(words))
            + f32_words(power_w)
            + [0] * (0x48 - 0x36)
            + f32_words(self.energy_kwh)
        )
        self.bank.set_words("input", 0, table + [0] * (0x50 - len(table)))

    def units(self) -> dict[int, Unit]:
        return {self.unit_id: Unit(self.bank)}
