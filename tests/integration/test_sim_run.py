"""A scenario run live: the meter's frames on a real pty read by a plain reader, meter faults on
the garage's timeline, the virtual chargers logging in to a CSMS with the passwords the run
prints; and the command line end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.runner import SimulationRun, run_live
from simulator.scenario_file import parse_scenario
from tests.integration.sim_csms import CsmsState, running_csms
from tests.support import REPO_ROOT, sitectl_argv, subprocess_env

pytestmark = pytest.mark.integration

SCENARIO = """
[scenario]
name = "live-test"
duration_s = 80
seed = 3
speed = 20
start_utc = 2026-11-22T16:59:30Z   # the hourly list (registers) goes out at 18:00:10 Oslo time

[grid]
type = "IT"

[meter]
fuse = "main"
port = "/dev/null"
vendor = "aidon"

[meter_sim]
vendor = "aidon"
energy_import_start_wh = 5000000

[[fuses]]
id = "main"
limit_a = 63

[[chargers]]
id = "CP-A"
protocol = "ocpp"
fuse = "main"
lines = ["L1", "L2"]
max_a = 16
safe_current_a = 6

[[chargers]]
id = "CP-B"
protocol = "ocpp"
fuse = "main"
lines = ["L2", "L3", "L1"]
max_a = 16
safe_current_a = 6

[[charger_sim]]
match = "CP-B"
version = "2.0.1"

[[visits]]
car = "1ph-32"
arrival_s = 2
departure_s = 1000
soc = 0.3
charger = "CP-A"

[[faults]]
at_s = 20
kind = "meter_silence"
duration_s = 15

[[faults]]
at_s = 45
kind = "meter_garbage"
garbage_bytes = 40
frames = 2
"""


def crc16_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def valid_frames(stream: bytes) -> list[bytes]:
    """HDLC type 3 frames (7E A0 LL ... FCS 7E) whose frame check sequence is right."""
    frames, i = [], 0
    while i < len(stream) - 3:
        if stream[i] != 0x7E or stream[i + 1] & 0xF0 != 0xA0:
            i += 1
            continue
        length = ((stream[i + 1] & 0x07) << 8) | stream[i + 2]
        frame = stream[i : i + length + 2]
        body = frame[1:-1]
        if (
            len(frame) == length + 2
            and frame[-1] == 0x7E
            and crc16_x25(body[:-2]) == int.from_bytes(body[-2:], "little")
        ):
            frames.append(frame)
            i += length + 2
        else:
            i += 1
    return frames


async def read_pty(path: Path, sink: bytearray, stop: asyncio.Event) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        while not stop.is_set():
            with contextlib.suppress(BlockingIOError):
                sink += os.read(fd, 4096)
                continue
            await asyncio.sleep(0.01)
    finally:
        os.close(fd)


async def test_live_run_meter_on_a_pty_with_faults_and_chargers_logging_in(tmp_path: Path) -> None:
    loaded = parse_scenario(SCENARIO)
    state = CsmsState(passwords=dict(loaded.passwords), pending_boots=0)
    link = tmp_path / "ttyHAN"
    received = bytearray()
    stop = asyncio.Event()
    async with running_csms(state) as (url, _), SimulationRun(loaded, csms_url=url, meter_link=link) as sim:
        endpoints = sim.endpoints
        assert endpoints.meter_port == str(link)
        assert {c.identity: c.password for c in endpoints.chargers} == loaded.passwords
        reader = asyncio.create_task(read_pty(link, received, stop))
        try:
            rec = await sim.run()
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await reader
        assert sim.meter is not None
        meter = sim.meter.virtual
        sent = sum(meter.frames_sent.values())

    frames = valid_frames(bytes(received))
    assert sent > 20
    assert len(frames) >= sent - 1  # the last frame may still be on its way when the run ends
    assert meter.frames_silenced >= 5  # 15 s of silence: ~6 slots of 2.5 s
    assert sim.meter.faults.injected == {"Silence": 1, "Garbage": 1}
    assert len(received) > sum(len(f) for f in frames) + 79  # the garbage bytes are on the line too
    assert 3 in meter.frames_sent  # the hourly list with the energy registers
    # The chargers logged in with the passwords the run printed, and the car charged.
    boots = {r.identity for r in state.log if r.action == "BootNotification"}
    assert boots == {"CP-A", "CP-B"}
    assert any(p["id_tag"] == "TAG-visit-000" for p in state.of("StartTransaction"))
    assert rec.visits[0].delivered_wh > 0


async def test_run_live_writes_endpoints_and_reports_counters(tmp_path: Path) -> None:
    loaded = parse_scenario(
        SCENARIO.replace("duration_s = 80", "duration_s = 20").replace("speed = 20", "speed = 40")
    )
    lines: list[str] = []
    rec, extra = await run_live(
        loaded, meter_tcp=("127.0.0.1", 0), endpoints_path=tmp_path / "ep.json", out=lines.append
    )
    endpoints = json.loads((tmp_path / "ep.json").read_text())
    assert endpoints["meter_port"].startswith("socket://127.0.0.1:")
    assert endpoints["clock_speed"] == 40.0
    assert endpoints["clock_epoch_utc"] == "2026-11-22T16:59:30Z"
    assert {c["identity"] for c in endpoints["chargers"]} == {"CP-A", "CP-B"}
    assert any(line.startswith("meter: aidon HAN frames on socket://") for line in lines)
    assert extra["run"]["mode"] == "live"
    assert sum(extra["meter"]["frames_sent"].values()) > 0
    assert rec.rows > 0


def test_command_line_offline_run_writes_report_and_plot(tmp_path: Path) -> None:
    scenario = REPO_ROOT / "simulator" / "scenarios" / "kamstrup_10s.toml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            str(scenario),
            "--offline",
            "--duration",
            "600",
            "--report",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scenario"] == "kamstrup-10s" and report["run"] == {"mode": "offline"}
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert "summary of kamstrup-10s" in result.stdout
    assert "energy:" in result.stdout


def test_command_line_names_a_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.replace("seed = 3", "seed = 3\nsped = 4"))
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(bad), "--offline"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "scenario.sped: unknown key" in result.stderr


def test_sitectl_sim_run_offline(tmp_path: Path) -> None:
    scenario = REPO_ROOT / "simulator" / "scenarios" / "aidon_it_no_l2.toml"
    result = subprocess.run(
        sitectl_argv(
            "sim",
            "run",
            str(scenario),
            "--offline",
            "--duration",
            "300",
            "--report",
            str(tmp_path / "r.json"),
        ),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["scenario"] == "aidon-it-no-l2"
    assert "summary of aidon-it-no-l2 (300 s simulated)" in result.stdout


def test_sitectl_sim_run_refuses_offline_with_a_daemon() -> None:
    scenario = REPO_ROOT / "simulator" / "scenarios" / "aidon_it_no_l2.toml"
    result = subprocess.run(
        sitectl_argv("sim", "run", str(scenario), "--offline", "--with-daemon"),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--offline" in result.stderr
