"""The daemon-under-test process manager, against a small stand-in daemon: a Python child that
listens on the control socket path it is given and logs to standard error. (The real daemon's
end-to-end runs belong to tests/hil.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import controller.simrun
from controller.cli.sim import daemon_around
from controller.simrun import ClockArgs, DaemonError, DaemonUnderTest
from simulator.runner import run_live
from simulator.scenario_file import parse_scenario

pytestmark = pytest.mark.integration

STAND_IN = """
import os, socket, sys, time
path = sys.argv[1]
if os.path.exists(path):
    os.unlink(path)  # a killed predecessor leaves its socket file behind
time.sleep(float(os.environ.get("STAND_IN_DELAY_S", "0")))
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
print(f"stand-in up pid={os.getpid()} args={sys.argv[2:]}", file=sys.stderr, flush=True)
if os.environ.get("STAND_IN_IGNORE_TERM"):
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(120)
"""


def stand_in(sock: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(sock), *extra]


async def test_start_ready_kill_restart_and_stop(tmp_path: Path) -> None:
    sock, log = tmp_path / "control.sock", tmp_path / "daemon.log"
    env = {"STAND_IN_DELAY_S": "0.3"}
    async with DaemonUnderTest(stand_in(sock, "--x"), sock, log, env=env) as daemon:
        first = daemon.pid
        assert daemon.running and first is not None
        daemon.kill()
        await daemon.restart()
        assert daemon.running and daemon.pid != first
        assert (daemon.starts, daemon.kills) == (2, 1)
        assert daemon.exit_codes == [-9]
    assert daemon.exit_codes == [-9, -15]  # SIGKILL, then SIGTERM at the end
    assert daemon.pid is None
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all("stand-in up" in line and "['--x']" in line for line in lines)


async def test_a_daemon_that_exits_at_once_is_reported_with_its_output(tmp_path: Path) -> None:
    sock, log = tmp_path / "control.sock", tmp_path / "daemon.log"
    argv = [sys.executable, "-c", "import sys; print('bad configuration: x', file=sys.stderr); sys.exit(2)"]
    with pytest.raises(DaemonError, match=r"exited with code 2 before its control socket") as info:
        async with DaemonUnderTest(argv, sock, log, env={}):
            pass
    assert "bad configuration: x" in str(info.value)


async def test_a_daemon_that_never_listens_times_out_and_is_stopped(tmp_path: Path) -> None:
    sock, log = tmp_path / "control.sock", tmp_path / "daemon.log"
    daemon = DaemonUnderTest(
        [sys.executable, "-c", "import time; time.sleep(60)"], sock, log, env={}, ready_timeout_s=0.5
    )
    with pytest.raises(DaemonError, match=r"did not answer within 0.5 s"):
        async with daemon:
            pass
    assert daemon.pid is None and daemon.exit_codes == [-15]


async def test_a_daemon_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    sock, log = tmp_path / "control.sock", tmp_path / "daemon.log"
    daemon = DaemonUnderTest(stand_in(sock), sock, log, env={"STAND_IN_IGNORE_TERM": "1"}, stop_timeout_s=0.5)
    async with daemon:
        pass
    assert daemon.exit_codes == [-9]


async def test_a_stale_socket_file_is_not_taken_for_a_ready_daemon(tmp_path: Path) -> None:
    sock, log = tmp_path / "control.sock", tmp_path / "daemon.log"
    async with DaemonUnderTest(stand_in(sock), sock, log, env={}) as daemon:
        daemon.kill()
        await asyncio.sleep(0.2)
        assert sock.exists()  # what a SIGKILLed daemon leaves behind
        # The next start is only ready once the new process listens (after a delay here).
        daemon.env = {"STAND_IN_DELAY_S": "0.5"}
        await daemon.restart()
        assert daemon.running and daemon.starts == 2


SCENARIO = """
[scenario]
name = "kill-drill"
duration_s = 40
speed = 20

[grid]
type = "TN"

[meter]
fuse = "main"
port = "/dev/null"
vendor = "kamstrup"

[[fuses]]
id = "main"
limit_a = 40

[[chargers]]
id = "CP-1"
protocol = "ocpp"
fuse = "main"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6

[[faults]]
at_s = 10
kind = "controller_kill"
duration_s = 10
"""


async def test_controller_kill_drill_runs_on_the_scenarios_timeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ClockArgs | None] = []

    def argv(config_path: Path, clock: ClockArgs | None = None) -> list[str]:
        seen.append(clock)
        return stand_in(tmp_path / "control.sock", str(config_path))

    monkeypatch.setattr(controller.simrun, "daemon_argv", argv)
    monkeypatch.setattr(controller.simrun, "daemon_env", lambda base=None: {})
    loaded = parse_scenario(SCENARIO)
    lines: list[str] = []
    rec, _ = await run_live(
        loaded,
        meter_link=tmp_path / "ttyHAN",
        csms_url="ws://127.0.0.1:9/ocpp",
        around=daemon_around(tmp_path, "127.0.0.1:9", out=lines.append),
        out=lines.append,
    )
    assert rec.rows > 0
    log = (tmp_path / "daemon.log").read_text().splitlines()
    assert len(log) == 2  # started, killed at 10 s, started again at 20 s
    assert str(tmp_path / "site.toml") in log[0]
    assert any(line.startswith("controller_kill at 10 s: SIGKILL") for line in lines)
    assert any(line.startswith("daemon restarted") for line in lines)
    assert lines[-1] == "daemon stopped, exit code -15"
    clock = seen[0]
    assert clock is not None and clock.speed == 20.0
    assert clock.epoch_utc == loaded.scenario.start_utc
    # The daemon's configuration points at the simulator's meter.
    assert f'port = "{tmp_path / "ttyHAN"}"' in (tmp_path / "site.toml").read_text()
