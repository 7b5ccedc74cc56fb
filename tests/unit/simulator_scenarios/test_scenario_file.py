"""The scenario file loader: inline and referenced sites, simulator tables, errors that name keys."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.settings import sections
from simulator import scenario_file as sf
from simulator.scenario_file import ScenarioFileError, load_scenario, parse_scenario
from tests.support import REPO_ROOT

SITE = """
[site]
id = "test-site"
timezone = "Europe/Oslo"

[grid]
type = "IT"
nominal_voltage_v = 230

[meter]
fuse = "main"
port = "/dev/ttyUSB0"
vendor = "aidon"
ct_ratio = 1.0

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c1"
parent = "main"
limit_a = 32
base_load_a = 0

[[fuses]]
id = "c2"
parent = "main"
limit_a = 32

[[chargers]]
id = "CP-1"
protocol = "ocpp"
fuse = "c1"
lines = ["L1", "L2"]
max_a = 32
safe_current_a = 6
password_hash = "scrypt$4$1$1$c2FsdA$a2V5"
space = "P-1"

[[chargers]]
id = "CP-2A"
protocol = "ocpp"
fuse = "c2"
lines = ["L2", "L3"]
ocpp_identity = "TWIN"
connector = 1
max_a = 16
safe_current_a = 6

[[chargers]]
id = "CP-2B"
protocol = "ocpp"
fuse = "c2"
lines = ["L3", "L1"]
ocpp_identity = "TWIN"
connector = 2
max_a = 16
safe_current_a = 0

[ocpp]
listen = "0.0.0.0:9000"

[mqtt]
url = "mqtts://broker.example.net:8883"
"""

SIM = """
[scenario]
name = "unit"
duration_s = 600
seed = 11
speed = 30
start_utc = 2026-11-22T16:00:00Z
step_s = 0.5

[meter_sim]
vendor = "aidon"
ct_ratio = 1
energy_import_start_wh = 1000

[[fuse_sim]]
match = "c*"
device = "C"

[charger_defaults]
profile_delay_s = 2.0

[[charger_sim]]
match = "TWIN"
version = "2.0.1"

[[base_loads]]
id = "house"
fuse = "main"
kind = "evening_peak"
amps_a = [10, 8, 12]

[arrivals]
rate_per_h = 4

[arrivals.car_mix]
"1ph-32" = 1
"3ph-16" = 1

[[visits]]
car = "1ph-32"
arrival_s = 10
departure_s = 500
soc = 0.3
charger = "CP-1"

[[faults]]
at_s = 100
kind = "charger_disconnect"
target = "CP-2B"
duration_s = 30

[[faults]]
at_s = 50
kind = "meter_silence"
duration_s = 20

[[faults]]
at_s = 60
kind = "meter_garbage"
garbage_bytes = 10
frames = 2

[[faults]]
at_s = 200
kind = "controller_kill"
duration_s = 40
"""


def inline(extra: str = "", sim: str = SIM, site: str = SITE) -> str:
    return sim + extra + site


def test_inline_scenario_maps_every_table() -> None:
    loaded = parse_scenario(inline())
    sc = loaded.scenario
    assert (sc.name, sc.duration_s, sc.seed, sc.step_s) == ("unit", 600.0, 11, 0.5)
    assert sc.start_utc == datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    assert loaded.speed == 30.0
    assert sc.grid.type == "IT"
    assert {f.id: f.device for f in sc.fuses} == {"main": "gG", "c1": "C", "c2": "C"}
    by_id = {c.identity: c for c in sc.chargers}
    assert set(by_id) == {"CP-1", "TWIN"}
    twin = by_id["TWIN"]
    assert twin.connectors == 2
    assert twin.connector_lines == (("L2", "L3"), ("L3", "L1"))
    assert (twin.version, twin.profile_delay_s, twin.max_current_a) == ("2.0.1", 2.0, 16.0)
    assert by_id["CP-1"].version == "1.6"
    # The site's charger id of a twin connector names the charger the fault acts on.
    assert [(f.kind, f.target) for f in sc.faults] == [("charger_disconnect", "TWIN")]
    assert [(m.kind, m.at_s) for m in loaded.meter_faults] == [("meter_silence", 50), ("meter_garbage", 60)]
    assert loaded.meter_faults[1].garbage_bytes == 10 and loaded.meter_faults[1].frames == 2
    assert [(k.at_s, k.duration_s) for k in loaded.controller_kills] == [(200.0, 40.0)]
    assert loaded.meter is not None
    assert (loaded.meter.vendor, loaded.meter.fuse, loaded.meter.energy_import_start_wh) == (
        "aidon",
        "main",
        1000,
    )
    assert sc.arrivals is not None
    assert {s.model for _, s in sc.arrivals.fleet} == {"1ph-32", "3ph-16"}
    # 16:00 UTC is 17:00 in Oslo: hourly rates are counted from the local hour.
    assert sc.arrivals.day_offset_s == 17 * 3600
    assert sc.base_loads[0].amps == (10.0, 8.0, 12.0)


def test_passwords_follow_the_rules_and_repeat_for_the_same_scenario() -> None:
    first = parse_scenario(inline()).passwords
    again = parse_scenario(inline()).passwords
    assert first == again
    assert set(first) == {"CP-1", "TWIN"}
    for password in first.values():
        assert 16 <= len(password) <= 40 and password.isalnum()
    assert first["CP-1"] != first["TWIN"]
    chargers = {c.identity: c for c in parse_scenario(inline()).scenario.chargers}
    assert chargers["CP-1"].password == first["CP-1"]


def test_a_password_given_in_charger_sim_is_used() -> None:
    extra = '[[charger_sim]]\nmatch = "CP-1"\npassword = "0123456789abcdefXYZ"\n'
    loaded = parse_scenario(inline(extra))
    assert loaded.passwords["CP-1"] == "0123456789abcdefXYZ"


def test_referenced_site_file_is_read_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "site.toml").write_text(SITE)
    path = tmp_path / "scenario.toml"
    path.write_text('site = "sites/site.toml"\n' + SIM)
    loaded = load_scenario(path)
    assert loaded.site.source == (tmp_path / "sites" / "site.toml").resolve()
    assert loaded.site.site == {"id": "test-site", "timezone": "Europe/Oslo"}
    assert [f["id"] for f in loaded.site.fuses] == ["main", "c1", "c2"]
    assert loaded.site.chargers[0]["password_hash"].startswith("scrypt$")
    assert loaded.scenario == parse_scenario(inline()).scenario


def test_the_product_example_site_runs_as_a_scenario(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "config" / "site.example.toml", tmp_path / "site.toml")
    path = tmp_path / "scenario.toml"
    path.write_text('site = "site.toml"\n[scenario]\nduration_s = 60\n')
    loaded = load_scenario(path)
    identities = {c.identity for c in loaded.scenario.chargers}
    assert identities == {"CP-01", "CP-02", "CP-03", "TWIN-0042"}
    assert any("MB-06" in note and "Modbus" in note for note in loaded.notes)
    twin = next(c for c in loaded.scenario.chargers if c.identity == "TWIN-0042")
    assert twin.connector_lines == (("L3", "L1"), ("L2", "L3"))
    # vendor = "auto" in the site: the simulated meter defaults to an Aidon.
    assert loaded.meter is not None and loaded.meter.vendor == "aidon"


def test_site_reference_and_inline_site_tables_do_not_mix(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(SITE)
    path = tmp_path / "scenario.toml"
    path.write_text('site = "site.toml"\n[grid]\ntype = "TN"\n')
    with pytest.raises(ScenarioFileError, match=r"grid: the site comes from site = 'site.toml'"):
        load_scenario(path)


def test_a_missing_site_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text('site = "nowhere.toml"\n')
    with pytest.raises(ScenarioFileError, match=r"nowhere.toml: no such file"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (inline("[extras]\nx = 1\n"), r"extras: unknown key"),
        (inline().replace("seed = 11", "seed = 11\nsede = 3"), r"scenario\.sede: unknown key"),
        (
            inline().replace('space = "P-1"', 'space = "P-1"\nmax_amps = 3'),
            r"chargers\[0\]\.max_amps: unknown key",
        ),
        (inline().replace("base_load_a = 0", "base_load = 0"), r"fuses\[1\]\.base_load: unknown key"),
        (
            inline().replace('vendor = "aidon"\nct_ratio = 1.0', 'vendor = "aidon"\nct = 1'),
            r"meter\.ct: unknown key",
        ),
        (inline().replace("frames = 2", "frames = 2\nseverity = 9"), r"faults\[2\]\.severity: unknown key"),
        (
            inline().replace("energy_import_start_wh = 1000", "energy_wh = 1"),
            r"meter_sim\.energy_wh: unknown key",
        ),
        (inline('[[car_models]]\nname = "x"\nbattery = 3\n'), r"car_models\[0\]\.battery: unknown key"),
    ],
)
def test_unknown_keys_are_named(text: str, message: str) -> None:
    with pytest.raises(ScenarioFileError, match=message):
        parse_scenario(text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('type = "IT"', 'type = "XT"', r"grid\.type: expected one of IT, TN, got 'XT'"),
        ("duration_s = 600", "duration_s = -5", r"scenario\.duration_s: must be above 0"),
        ("duration_s = 600", 'duration_s = "long"', r"scenario\.duration_s: expected a number, got a string"),
        (
            "start_utc = 2026-11-22T16:00:00Z",
            "start_utc = 2026-11-22T16:00:00",
            r"start_utc: needs a UTC offset",
        ),
        ('kind = "controller_kill"', 'kind = "meteor"', r"faults\[3\]\.kind: expected one of"),
        ('car = "1ph-32"', 'car = "trabant"', r"visits\[0\]\.car: unknown car model 'trabant'"),
        ('match = "TWIN"', 'match = "NOPE*"', r"charger_sim\[0\]\.match: matches no charger"),
        ("rate_per_h = 4", "rate_per_h = [1, 2, 3]", r"arrivals\.rate_per_h: give one rate or 24"),
        ('lines = ["L1", "L2"]', 'lines = ["L1"]', r"chargers\[0\]\.lines: a charger on IT has 2 or 3 lines"),
        ('lines = ["L1", "L2"]', 'lines = ["L1", "L7"]', r"'L7' is not a line"),
        ("max_a = 32", "max_a = 0", r"chargers\[0\]\.max_a: must be above 0"),
        ('fuse = "c1"\nlines', 'fuse = "c9"\nlines', r"unknown fuse 'c9'"),
        ("frames = 2", "frames = 0", r"faults\[2\]\.frames: must be at least 1"),
        (
            'kind = "charger_disconnect"\ntarget = "CP-2B"\nduration_s = 30',
            'kind = "charger_disconnect"\ntarget = "CP-2B"',
            r"charger_disconnect needs a duration",
        ),
    ],
)
def test_bad_values_are_named(old: str, new: str, message: str) -> None:
    text = inline()
    assert old in text
    with pytest.raises(ScenarioFileError, match=message):
        parse_scenario(text.replace(old, new, 1))


def test_twin_connectors_on_different_fuses_are_refused() -> None:
    text = inline().replace('fuse = "c2"\nlines = ["L3", "L1"]', 'fuse = "c1"\nlines = ["L3", "L1"]')
    with pytest.raises(ScenarioFileError, match=r"connectors of charger TWIN hang on different fuses"):
        parse_scenario(text)


def test_meter_faults_need_a_meter() -> None:
    site = SITE.replace(
        '[meter]\nfuse = "main"\nport = "/dev/ttyUSB0"\nvendor = "aidon"\nct_ratio = 1.0\n', ""
    )
    sim = SIM.replace('[meter_sim]\nvendor = "aidon"\nct_ratio = 1\nenergy_import_start_wh = 1000\n', "")
    with pytest.raises(ScenarioFileError, match=r"faults\[1\]\.kind: meter_silence needs a meter"):
        parse_scenario(sim + site)


def test_invalid_toml_is_reported_with_its_place() -> None:
    with pytest.raises(ScenarioFileError, match=r"invalid TOML"):
        parse_scenario("[scenario\nname = 1")


def test_overrides_from_the_command_line() -> None:
    loaded = parse_scenario(inline()).with_overrides(seed=5, duration_s=120, speed=200)
    assert (loaded.scenario.seed, loaded.scenario.duration_s, loaded.speed) == (5, 120.0, 200.0)
    with pytest.raises(ScenarioFileError, match="duration must be positive"):
        loaded.with_overrides(duration_s=0)


def test_site_keys_match_the_products_site_toml() -> None:
    # The simulator reads site.toml itself (it may not import the product); keep the names in step.
    assert set(sections.GridSection.model_fields) == sf.GRID_KEYS
    assert set(sections.MeterSection.model_fields) == sf.METER_KEYS
    assert set(sections.FuseSection.model_fields) == sf.FUSE_KEYS
    assert set(sections.ChargerSection.model_fields) == sf.CHARGER_KEYS
    assert set(sections.SiteSection.model_fields) == sf.SITE_SECTION_KEYS


def test_a_step_base_load_is_read_with_its_time_and_duration() -> None:
    extra = '[[base_loads]]\nid = "sauna"\nfuse = "main"\nkind = "step"\namps_a = [40, 0, 0]\nat_s = 120\n'
    step = parse_scenario(inline(extra + "duration_s = 30\n")).scenario.base_loads[-1]
    assert (step.kind, step.amps, step.at_s, step.duration_s) == ("step", (40.0, 0.0, 0.0), 120.0, 30.0)
    with pytest.raises(ScenarioFileError, match=r"base_loads\[1\]\.duration_s"):
        parse_scenario(inline(extra + "duration_s = 0\n"))
