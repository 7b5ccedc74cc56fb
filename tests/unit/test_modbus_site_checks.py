"""`sitectl config check` on Modbus chargers: the template is found and fits, a model without a
fail-safe needs accept_no_failsafe and is then counted at its maximum in the fail-safe budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import ConfigError, load_settings
from controller.site_checks import site_checks

RTU = "rtu:///dev/ttyUSB0?baudrate=19200"
SITE = """
[site]
id = "mb"

[grid]
type = "TN"

[[fuses]]
id = "main"
limit_a = {main_a}

[[chargers]]
id = "MB-1"
protocol = "modbus"
fuse = "main"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6

[chargers.modbus]
endpoint = "{endpoint}"
register_map = "{template}"
{extra}

[[chargers]]
id = "MB-2"
protocol = "modbus"
fuse = "main"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6

[chargers.modbus]
endpoint = "rtu:///dev/ttyUSB0?baudrate=19200"
register_map = "abb_terra_ac"
unit_id = {unit2}
accept_no_failsafe = true
"""


def check(tmp_path: Path, **values: object) -> list[str]:
    fields: dict[str, object] = {
        "main_a": 63,
        "endpoint": "tcp://10.0.0.5:502",
        "template": "vestel_evc04",
        "extra": "",
        "unit2": 2,
    }
    fields.update(values)
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(**fields))
    try:
        load_settings(path, {}, failsafe_budget_check=site_checks)
    except ConfigError as exc:
        return [p.message for p in exc.problems]
    return []


def test_a_site_with_shipped_templates_passes(tmp_path: Path) -> None:
    assert check(tmp_path) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"template": "nope"}, "no template nope.toml"),
        ({"template": "eastron_sdm630"}, "is a meter"),
        ({"endpoint": "rtu:///dev/ttyUSB1"}, "speaks tcp, not rtu"),
        ({"template": "abb_terra_ac", "endpoint": RTU, "extra": "unit_id = 2"},
         "unit 2 on rtu:///dev/ttyUSB0 is charger 'MB-1' already"),
        ({"template": "abb_terra_ac", "endpoint": "rtu:///dev/ttyUSB0?baudrate=9600",
          "extra": "accept_no_failsafe = true"}, "line settings differ"),
        ({"template": "abb_terra_ac", "endpoint": "tcp://10.0.0.5:502"}, "has no fail-safe"),
    ],
)  # fmt: skip
def test_a_modbus_charger_the_daemon_could_not_drive_safely_is_refused(
    tmp_path: Path, values: dict[str, object], expected: str
) -> None:
    problems = check(tmp_path, **values)
    assert any(expected in p for p in problems), problems


def test_a_charger_without_a_fail_safe_counts_at_its_maximum_in_the_budget(tmp_path: Path) -> None:
    # 6 A + 6 A fit 22 A less the 2 A margin; with the ABB at its 16 A they do not.
    problems = check(tmp_path, main_a=22)
    assert len(problems) == 3, problems
    assert all("MB-2 counted at their maximum: no fail-safe" in p for p in problems)
    assert check(tmp_path, main_a=24) == []  # 6 A + 16 A: exactly the 22 A the margin leaves


async def test_the_modbus_section_reaches_the_buses_and_drivers(tmp_path: Path) -> None:
    from controller.modbus_site import build_modbus_site
    from drivers.clock import SystemClock

    path = tmp_path / "site.toml"
    text = SITE.format(main_a=63, endpoint="tcp://10.0.0.5:502", template="vestel_evc04", extra="", unit2=2)
    path.write_text(text + "\n[modbus]\npoll_interval_s = 5.0\ntimeout_s = 0.5\nframe_gap_s = 0.01\n")
    settings = load_settings(path, {}, failsafe_budget_check=site_checks)

    async def record(_event: object) -> None:
        return None

    site = build_modbus_site(settings, SystemClock(), sink=lambda _e: None, record=record)
    assert set(site.buses) == {"tcp://10.0.0.5:502", "rtu:///dev/ttyUSB0"}
    bus = site.buses["rtu:///dev/ttyUSB0"]
    assert (bus.config.timeout_s, bus.config.gap_s) == (0.5, 0.01)
    mb2 = site.chargers["MB-2"].config
    assert (mb2.unit_id, mb2.poll_interval_s, mb2.max_current_a) == (2, 5.0, 16.0)
    assert site.chargers["MB-1"].config.unit_id == 255  # the template's default
    for bus in site.buses.values():
        await bus.close()
