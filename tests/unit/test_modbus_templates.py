"""Device templates (config/devices/): the shipped ones load and read as their documents say; a
broken one is refused with the file, the key and the reason."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from drivers.modbus.codec import BadRegisterValue, Table
from drivers.modbus.reading import decode_block, plan_reads, read_number, read_state, write_words
from drivers.modbus.template import DeviceKind, DeviceTemplate, TemplateError, load_templates, parse_template
from tests.support import REPO_ROOT

DEVICES = REPO_ROOT / "config" / "devices"


def templates() -> dict[str, DeviceTemplate]:
    return load_templates(DEVICES)


def f32(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]


def text(value: str, length: int) -> list[int]:
    raw = value.encode().ljust(2 * length, b"\0")
    return [int.from_bytes(raw[k : k + 2], "big") for k in range(0, 2 * length, 2)]


def test_every_shipped_template_loads_and_cites_its_document() -> None:
    loaded = templates()
    chargers = {n for n, t in loaded.items() if t.device.kind is DeviceKind.CHARGER}
    meters = {n for n, t in loaded.items() if t.device.kind is DeviceKind.METER}
    assert {
        "alfen_eve",
        "abb_terra_ac",
        "schneider_evlink_pro_ac",
        "vestel_evc04",
        "phoenix_charx_sec",
        "mennekes_amtron_hcc3",
    } <= chargers
    assert {"eastron_sdm630", "carlo_gavazzi_em24", "abb_b23"} <= meters
    for name, template in loaded.items():
        assert template.device.document and template.device.document_version, name
        if template.device.kind is DeviceKind.CHARGER:
            assert template.failsafe is not None, name


def test_alfen_reads_its_mode_3_state_as_text_and_takes_a_float_setpoint() -> None:
    alfen = templates()["alfen_eve"]
    assert read_state(alfen, text("C2", 5)) == "C"
    assert read_state(alfen, text("B1", 5)) == "B"
    assert write_words(alfen, "set_current", 16.0) == f32(16.0)
    with pytest.raises(BadRegisterValue, match="not in the template's map"):
        read_state(alfen, text("X9", 5))


def test_abb_state_code_sits_in_the_second_byte_and_currents_are_in_milliamps() -> None:
    abb = templates()["abb_terra_ac"]
    # 0x400C reads 00 00 04 xx: charging state 4 (C2) in the third byte, other flags beside it.
    assert read_state(abb, [0x0000, 0x0481]) == "C"
    assert read_state(abb, [0x0000, 0x0000]) == "A"
    assert read_number(abb, "current_l1", [0x0000, 15_900]) == pytest.approx(15.9)
    assert write_words(abb, "set_current", 6.0) == [0, 6000]
    assert not abb.has_failsafe


def test_a_reading_outside_the_plausible_range_is_refused_not_used() -> None:
    abb = templates()["abb_terra_ac"]
    with pytest.raises(
        BadRegisterValue, match=re.escape("current_l1 (address 16400): 1048.58 A is outside 0..80")
    ):
        read_number(abb, "current_l1", [0x0010, 0x0000])
    alfen = templates()["alfen_eve"]
    negative = [int.from_bytes(struct.pack(">d", -5.0)[k : k + 2], "big") for k in range(0, 8, 2)]
    with pytest.raises(BadRegisterValue, match="energy"):
        read_number(alfen, "energy", negative)


def test_low_word_first_values_read_as_their_documents_say() -> None:
    em24 = templates()["carlo_gavazzi_em24"]
    # 16.000 A as INT32 in mA, low word first: 16000 = 0x00003E80.
    assert read_number(em24, "current_l1", [0x3E80, 0x0000]) == pytest.approx(16.0)
    schneider = templates()["schneider_evlink_pro_ac"]
    high, low = f32(11.04)
    assert read_number(schneider, "power", [low, high]) == pytest.approx(11_040.0)
    charx = templates()["phoenix_charx_sec"]
    assert read_state(charx, text("C", 1)) == "C"


def test_energy_comes_in_watt_hours_whatever_unit_the_device_uses() -> None:
    vestel = templates()["vestel_evc04"]
    assert read_number(vestel, "energy", [0, 1234]) == pytest.approx(123_400.0)  # 123.4 kWh
    sdm = templates()["eastron_sdm630"]
    assert read_number(sdm, "energy_import", f32(12.5)) == pytest.approx(12_500.0)


def test_a_poll_is_a_few_requests_and_leaves_write_only_registers_out() -> None:
    abb = templates()["abb_terra_ac"]
    # By default only neighbours share a request (0x4008-0x400B, 0x4018-0x401B are not in the
    # template) ...
    blocks = plan_reads(abb, abb.registers)
    assert [(b.start, b.count) for b in blocks] == [(0x4000, 8), (0x400C, 12), (0x401C, 4)]
    # ... and where a device answers across gaps, one request takes them all; never the
    # write-only set-current register.
    (block,) = plan_reads(abb, abb.registers, max_gap=8)
    assert (block.start, block.count) == (0x4000, 32)
    sdm = templates()["eastron_sdm630"]
    blocks = plan_reads(sdm, ["current_l1", "current_l2", "current_l3", "voltage_l1", "power"])
    assert [(b.table, b.start, b.count) for b in blocks] == [
        (Table.INPUT, 0, 2),
        (Table.INPUT, 6, 6),
        (Table.INPUT, 0x34, 2),
    ]


def test_a_block_answer_decodes_by_meaning_and_names_what_did_not() -> None:
    sdm = templates()["eastron_sdm630"]
    (block,) = plan_reads(sdm, ["current_l1", "current_l2", "current_l3"])
    words = f32(10.0) + f32(float("nan")) + f32(12.0)
    values, problems = decode_block(sdm, block, words)
    assert values == {"current_l1": 10.0, "current_l3": 12.0}
    assert list(problems) == ["current_l2"] and "not a reading" in problems["current_l2"]


GOOD = """
[device]
kind = "charger"
vendor = "Acme"
model = "Wallbox"
document = "Acme Modbus map"
document_version = "2"
transports = ["rtu"]

[registers]
set_current = { address = 10, type = "u16", unit = "A" }
vehicle_state = { address = 20, type = "u16" }
energy = { address = 30, type = "u32", unit = "Wh" }
failsafe_current = { address = 40, type = "u16", unit = "A" }
comm_timeout = { address = 41, type = "u16", unit = "s" }

[vehicle_state]
map = { "0" = "A", "1" = "B", "2" = "C" }

[failsafe]
kind = "registers"
safe_current = "failsafe_current"
timeout = "comm_timeout"
timeout_s = 30
"""


def test_a_user_written_template_is_enough_for_a_new_model() -> None:
    template = parse_template(GOOD, Path("acme.toml"))
    assert template.has_failsafe
    assert read_state(template, [2]) == "C"


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (('unit = "A" }', 'unit = "V" }', 1), "registers.set_current.unit", "not a unit of set_current"),
        (("address = 30,", "address = 20,", 1), "registers.energy", "overlaps vehicle_state"),
        (('timeout = "comm_timeout"\n', "", 1), "failsafe", "needs timeout"),
        (
            ('safe_current = "failsafe_current"', 'safe_current = "nope"', 1),
            "failsafe.safe_current",
            "no register",
        ),
        (("energy = ", "energy_total = ", 1), "registers.energy_total", "unknown meaning"),
        (('transports = ["rtu"]', 'transports = ["rtu"]\nunit_id = 250', 1), "device.unit_id", "1..247"),
        (("[failsafe]", "[failsafe_typo]", 1), "failsafe_typo", "Extra inputs"),
        (
            ('"u16", unit = "A" }', '"u16", unit = "A", table = "input" }', 1),
            "registers.set_current",
            "writes",
        ),
        (
            (
                'energy = { address = 30, type = "u32", unit = "Wh" }',
                'power = { address = 30, type = "u32", unit = "W" }',
                1,
            ),
            "registers.energy",
            "billed",
        ),
        (('document_version = "2"\n', "", 1), "device.document_version", "Field required"),
    ],
)
def test_a_broken_template_names_the_file_the_key_and_the_reason(
    change: tuple[str, str, int], key: str, reason: str
) -> None:
    old, new, count = change
    assert old in GOOD
    with pytest.raises(TemplateError) as raised:
        parse_template(GOOD.replace(old, new, count), Path("/etc/sitectl/devices/acme.toml"))
    error = raised.value
    assert str(error).startswith("/etc/sitectl/devices/acme.toml: ")
    assert error.key.startswith(key), str(error)
    assert reason in error.reason, str(error)


def test_a_template_that_is_not_toml_says_so() -> None:
    with pytest.raises(TemplateError, match="not valid TOML"):
        parse_template("[device\nkind=", Path("x.toml"))
