"""The daemon under test's configuration, generated from a scenario: valid for the product's
loader, the simulator's endpoints filled in, every virtual charger's password verifying."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.settings import ConfigError, load_settings
from controller.simrun import (
    ClockArgs,
    daemon_argv,
    daemon_config,
    daemon_env,
    sim_password_hash,
    write_daemon_config,
)
from drivers.ocpp.passwords import parse_hash, verify_password
from simulator.scenario_file import load_scenario
from tests.support import REPO_ROOT

LIBRARY = REPO_ROOT / "simulator" / "scenarios"


@pytest.mark.parametrize("name", sorted(p.name for p in LIBRARY.glob("*.toml")))
def test_library_scenarios_make_valid_daemon_configurations(name: str, tmp_path: Path) -> None:
    loaded = load_scenario(LIBRARY / name)
    config = daemon_config(
        loaded, meter_port=str(tmp_path / "ttyHAN"), ocpp_listen="127.0.0.1:9123", workdir=tmp_path
    )
    path = write_daemon_config(config, tmp_path / "site.toml")
    settings = load_settings(path, {})
    assert settings.meter is not None and settings.meter.port == str(tmp_path / "ttyHAN")
    assert settings.ocpp is not None
    assert (settings.ocpp.host, settings.ocpp.port, settings.ocpp.security_profile) == ("127.0.0.1", 9123, 1)
    assert settings.mqtt is None
    assert settings.storage.path == tmp_path / "ledger.sqlite"
    assert settings.control.socket_path == tmp_path / "control.sock"
    assert [f.id for f in settings.fuses] == [f["id"] for f in loaded.site.fuses]
    assert len(settings.chargers) == len(loaded.site.chargers)
    sample = settings.chargers[:: max(1, len(settings.chargers) // 5)]
    for charger in sample:
        assert charger.password_hash is not None
        assert verify_password(loaded.passwords[charger.identity], charger.password_hash)
        assert not verify_password("not-the-password-at-all", charger.password_hash)


def test_hashes_are_cheap_for_the_simulation() -> None:
    log2_n, r, p, _, _ = parse_hash(sim_password_hash("0123456789abcdefXYZ"))
    assert (log2_n, r, p) == (4, 1, 1)


def test_a_real_site_file_keeps_its_tables_and_gets_the_endpoints(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "config" / "site.example.toml", tmp_path / "real-site.toml")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('site = "real-site.toml"\n[scenario]\nname = "on real site"\nduration_s = 60\n')
    loaded = load_scenario(scenario)
    config = daemon_config(
        loaded, meter_port="socket://127.0.0.1:7000", ocpp_listen="127.0.0.1:9001", workdir=tmp_path
    )
    settings = load_settings(write_daemon_config(config, tmp_path / "daemon.toml"), {})
    assert settings.site.id == "solbakken-brl"
    assert settings.policy.lease_s == 60
    assert settings.meter is not None and settings.meter.port == "socket://127.0.0.1:7000"
    # The Modbus charger is not simulated, so the daemon is not told about it.
    assert [c.id for c in settings.chargers] == ["CP-01", "CP-02", "CP-03", "CP-04A", "CP-04B"]
    twin = [c for c in settings.chargers if c.identity == "TWIN-0042"]
    assert len(twin) == 2
    for charger in twin:
        assert charger.password_hash is not None
        assert verify_password(loaded.passwords["TWIN-0042"], charger.password_hash)
    assert settings.charger("CP-03").quirks == {"meter_values_in_kwh": True}


def test_a_site_the_product_rejects_is_refused_before_any_daemon_starts(tmp_path: Path) -> None:
    loaded = load_scenario(LIBRARY / "fault_drills.toml")
    config = daemon_config(loaded, meter_port="/dev/null", ocpp_listen="127.0.0.1:9001", workdir=tmp_path)
    config["fuses"][1]["parent"] = "nowhere"
    with pytest.raises(ConfigError, match=r"parent 'nowhere' of fuse 'board' is not a fuse"):
        write_daemon_config(config, tmp_path / "site.toml")


def test_generated_file_is_plain_toml(tmp_path: Path) -> None:
    loaded = load_scenario(LIBRARY / "aidon_it_no_l2.toml")
    config = daemon_config(loaded, meter_port=None, ocpp_listen="127.0.0.1:9001", workdir=tmp_path)
    assert "meter" not in config  # no simulated meter endpoint: the daemon runs without one
    data = tomllib.loads(write_daemon_config(config, tmp_path / "s.toml").read_text())
    assert data["site"] == {"id": "aidon-it-no-l2", "timezone": "Europe/Oslo"}
    assert data["log"] == {"level": "info", "format": "json"}


def test_clock_arguments_put_the_daemon_on_the_simulators_timeline() -> None:
    clock = ClockArgs(60.0, datetime(2026, 11, 22, 15, 30, tzinfo=UTC), 1234.567890123)
    argv = daemon_argv(Path("/tmp/x/site.toml"), clock)
    assert argv[1:6] == ["-m", "controller.cli", "run", "--config", "/tmp/x/site.toml"]
    args = dict(zip(argv[6::2], argv[7::2], strict=True))
    assert float(args["--clock-speed"]) == 60.0
    assert datetime.fromisoformat(args["--clock-epoch"].replace("Z", "+00:00")) == clock.epoch_utc
    assert float(args["--clock-anchor"]) == 1234.567890123
    assert daemon_argv(Path("c.toml"))[-2:] == ["--config", "c.toml"]


def test_daemon_env_drops_configuration_overrides() -> None:
    env = daemon_env({"PATH": "/bin", "SITECTL_MQTT__URL": "mqtt://x", "SITECTL_TESTS_STRICT": "1"})
    assert "SITECTL_MQTT__URL" not in env
    assert env["SITECTL_TESTS_STRICT"] == "1"
    assert env["PYTHONPATH"].split(":")[0] == str(REPO_ROOT)


def test_a_site_over_its_fail_safe_budget_is_refused_before_any_daemon_starts(tmp_path: Path) -> None:
    # `sitectl run` checks that every charger at its safe current fits the fuses and exits 2 if not;
    # the generated configuration is checked the same way, so a scenario whose site the daemon would
    # refuse fails here with the reason instead of as a daemon that died at start (three library
    # scenarios did, found by tests/hil).
    loaded = load_scenario(LIBRARY / "fault_drills.toml")
    config = daemon_config(loaded, meter_port="/dev/null", ocpp_listen="127.0.0.1:9001", workdir=tmp_path)
    for charger in config["chargers"]:
        charger["safe_current_a"] = charger["max_a"]
    with pytest.raises(ConfigError, match=r"fail-safe budget: every charger at its safe current"):
        write_daemon_config(config, tmp_path / "site.toml")
