"""The real daemon as a device under test next to the simulated garage.

- `daemon_config(...)`: a site configuration for the daemon from a scenario's site description,
  with the simulator's endpoints filled in (meter port, an OCPP listener on localhost, security
  profile 1 with each virtual charger's password hashed), its ledger and control socket in a
  work directory, and no uplink. `write_daemon_config` writes it as TOML and validates it with
  `controller.settings.load_settings` before anybody starts a daemon on it.
- `ClockArgs` / `daemon_argv(...)`: the command line that puts the daemon on the simulator's
  simulated timeline (same speed, epoch and real-time anchor).
- `DaemonUnderTest`: start the daemon as a child process, wait until its control socket accepts
  connections, log its output to a file, SIGKILL and restart it (a `controller_kill` drill), and
  SIGTERM it at the end.

    async with DaemonUnderTest(daemon_argv(config, clock), socket_path, log_path) as daemon:
        ...
        daemon.kill()
        await daemon.restart()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import structlog
import tomli_w

from simulator.scenario_file import LoadedScenario

# Scrypt at n = 2**4, r = 1: the daemon under test checks a password in microseconds, so forty
# chargers connecting at once do not stall its startup. Only for simulated chargers.
SIM_HASH_LOG2_N = 4
SIM_HASH_R = 1

log = structlog.get_logger("controller.simrun")


class DaemonError(RuntimeError):
    """The daemon under test did not start, or died where it should not have."""


# --------------------------------------------------------------------------- configuration
def sim_password_hash(password: str) -> str:
    from drivers.ocpp.passwords import hash_password

    return hash_password(password, log2_n=SIM_HASH_LOG2_N, r=SIM_HASH_R, p=1)


def _site_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:64]
    return slug or "simulated-site"


def daemon_config(
    loaded: LoadedScenario,
    *,
    meter_port: str | None,
    ocpp_listen: str,
    workdir: Path,
    hash_password: Callable[[str], str] = sim_password_hash,
    log_level: str = "info",
) -> dict[str, Any]:
    """The daemon's site configuration (a TOML-ready dict) for a scenario and its endpoints.

    The site's own tables are kept as they are (a scenario can point at a real site.toml), except:
    `[meter] port` is the simulator's meter; `[ocpp]` listens on `ocpp_listen` with security
    profile 1 (basic auth, no TLS); every OCPP charger's `password_hash` is the hash of the password
    its virtual charger uses; Modbus chargers are left out (not simulated yet); `[storage]` and
    `[control]` live in `workdir`; there is no `[mqtt]` (sessions wait in the outbox); any RFID tag
    may charge, since no backend sends the simulated residents' tags.
    """
    site = loaded.site
    config: dict[str, Any] = {
        "site": {
            "id": site.site.get("id") or _site_id(loaded.scenario.name),
            "timezone": site.site.get("timezone", loaded.scenario.timezone),
        },
        "grid": dict(site.grid),
    }
    if site.policy is not None:
        config["policy"] = dict(site.policy)
    if site.meter is not None and meter_port is not None:
        config["meter"] = {**site.meter, "port": meter_port}
    config["fuses"] = [dict(f) for f in site.fuses]
    chargers = []
    for charger in site.chargers:
        if charger.get("protocol") != "ocpp":
            continue
        identity = charger.get("ocpp_identity") or charger["id"]
        chargers.append({**charger, "password_hash": hash_password(loaded.passwords[identity])})
    config["ocpp"] = {"listen": ocpp_listen, "security_profile": 1, "adoption": False}
    config["chargers"] = chargers
    # No backend sends an authorization list to a simulated garage; its residents' tags are made up
    # by the simulator, so the daemon under test lets any tag charge (sessions still record the tag).
    config["authorization"] = {"accept_unknown_tags": True}
    config["storage"] = {"path": str(workdir / "ledger.sqlite")}
    config["control"] = {"socket_path": str(workdir / "control.sock")}
    config["log"] = {"level": log_level, "format": "json"}
    return config


def write_daemon_config(config: Mapping[str, Any], path: Path) -> Path:
    """Write the configuration as TOML and check it as the daemon will, fail-safe budget included
    (raises ConfigError)."""
    from controller.settings import load_settings
    from controller.site_checks import site_checks

    path.write_text(tomli_w.dumps(_toml_ready(config)), encoding="utf-8")
    load_settings(path, {}, failsafe_budget_check=site_checks)
    return path


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- the command line
@dataclass(frozen=True, slots=True)
class ClockArgs:
    """The simulated timeline: `speed` simulated seconds per real second from `epoch_utc`, which
    was `real_start_s` on the system's monotonic clock (shared by every process on the machine)."""

    speed: float
    epoch_utc: datetime
    real_start_s: float

    def argv(self) -> list[str]:
        epoch = self.epoch_utc.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return [
            "--clock-speed",
            repr(self.speed),
            "--clock-epoch",
            epoch,
            "--clock-anchor",
            repr(self.real_start_s),
        ]


def daemon_argv(config_path: Path, clock: ClockArgs | None = None) -> list[str]:
    """`sitectl run --config FILE` (on the simulated clock when `clock` is given)."""
    argv = [sys.executable, "-m", "controller.cli", "run", "--config", str(config_path)]
    return argv + (clock.argv() if clock is not None else [])


def daemon_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: this checkout importable, and no SITECTL_<SECTION>__<KEY> overrides
    (the generated file is the whole configuration)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not (k.upper().startswith("SITECTL_") and "__" in k)}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


# --------------------------------------------------------------------------- the process
class DaemonUnderTest:
    """A daemon child process: ready when its control socket accepts a connection.

    Its standard output and error go to `log_path` (appended across restarts). `kill()` is a
    SIGKILL (no cleanup, as a power cut or the OOM killer); `restart()` starts it again and waits
    until it is ready; `stop()` sends SIGTERM and waits `stop_timeout_s`, then SIGKILLs.
    """

    def __init__(
        self,
        argv: Sequence[str],
        socket_path: Path,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.argv = list(argv)
        self.socket_path = socket_path
        self.log_path = log_path
        self.env = dict(env) if env is not None else daemon_env()
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._killed_pid: int | None = None
        self.exit_codes: list[int] = []

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    async def start(self) -> None:
        """Start the process and wait until its control socket answers."""
        if self.running:
            raise DaemonError("the daemon is already running")
        proc = self._spawn()
        self.starts += 1
        log.info("daemon_started", pid=proc.pid, start=self.starts)
        await self.wait_ready()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self._proc = proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )
        return proc

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._reap()
                raise DaemonError(
                    f"the daemon exited with code {code} before its control socket {self.socket_path} "
                    f"answered; its output:\n{self.log_tail()}"
                )
            if await _accepts(self.socket_path):
                log.info("daemon_ready", pid=proc.pid)
                return
            if loop.time() > deadline:
                raise DaemonError(
                    f"the daemon's control socket {self.socket_path} did not answer within "
                    f"{self.ready_timeout_s:g} s; its output:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL now (no-op when it is not running)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL)
        # Not yet reaped after an earlier kill() is still one kill.
        if self._killed_pid != proc.pid:
            self._killed_pid = proc.pid
            self.kills += 1
            log.info("daemon_killed", pid=proc.pid)

    async def restart(self) -> None:
        """Kill it if it still runs, reap it, and start it again (ready on return)."""
        self.kill()
        await self._wait_exit(self.stop_timeout_s)
        await self.start()

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL after `stop_timeout_s`. Returns the exit code (None: never ran)."""
        proc = self._proc
        if proc is None:
            self._close_log()
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not await self._wait_exit(self.stop_timeout_s):
                log.warning("daemon_stop_timeout", pid=proc.pid, timeout_s=self.stop_timeout_s)
                self.kill()
                await self._wait_exit(self.stop_timeout_s)
        code = proc.poll()
        self._reap()
        self._close_log()
        return code

    async def _wait_exit(self, timeout_s: float) -> bool:
        proc = self._proc
        if proc is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Polling, not asyncio's child watcher: on Python 3.11 that watcher is a thread per child.
        while proc.poll() is None:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        self._reap()
        return True

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self.exit_codes.append(proc.returncode)
            log.info("daemon_exited", pid=proc.pid, code=proc.returncode)
            self._proc = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:]) or "(nothing)"
        return "(no log)"


async def _accepts(path: Path) -> bool:
    # A connect, not a look for the file: a SIGKILLed daemon leaves its socket file behind.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True
