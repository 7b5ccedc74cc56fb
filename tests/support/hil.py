"""Hardware-in-the-loop runs: the real daemon (`sitectl run`) against the simulated garage.

`run_hil(loaded, workdir)` is `sitectl sim run --with-daemon` for a test: `simulator.runner.run_live`
steps the garage (meter on a pty, chargers over OCPP) while `controller.cli.sim.daemon_around` runs
the daemon under test on the same simulated clock, configured for the simulation's endpoints, with
the scenario's `controller_kill` faults applied. A test may pass a `probe`: a coroutine that runs
alongside the garage with a `HilRun` (scenario time, the garage's ground truth, the daemon's control
socket) and whose result comes back in `HilResult.probe`. After the run the daemon has been stopped
(SIGTERM), so the ledger in the work directory can be opened.

Everything a test asserts on is simulated time from the ground truth (the recording) or the daemon's
own records; the garage and the daemon share the simulated timeline, so nothing depends on how fast
the machine is, as long as the speed leaves both processes headroom.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.cli.sim import daemon_around
from controller.localapi.client import DaemonUnreachable, RemoteError, call
from controller.sessions import Ledger
from controller.sessions.model import Session
from simulator.metrics import report
from simulator.recording import Recording
from simulator.runner import SimulationRun, run_live
from simulator.scenario_file import LoadedScenario
from tests.support import free_tcp_port

# A status call answers in milliseconds; a loaded machine may stall one for a while.
STATUS_TIMEOUT_S = 10.0


@dataclass(slots=True)
class HilRun:
    """The run as a probe sees it while the garage steps."""

    loaded: LoadedScenario
    sim: SimulationRun
    workdir: Path

    @property
    def socket_path(self) -> Path:
        return self.workdir / "control.sock"

    def now_s(self) -> float:
        """Seconds since the scenario's t = 0 on the shared clock (negative before it starts)."""
        return self.sim.clock.monotonic() - self.sim.t0_s

    async def sleep_until(self, at_s: float) -> None:
        """Wait until the scenario's clock reads `at_s` (seconds from its start)."""
        await self.sim.sleep_until_scenario_s(at_s)

    async def status(self) -> dict[str, Any]:
        """The daemon's `status` answer (what `sitectl status --json` prints)."""
        result = await call(self.socket_path, "status", timeout_s=STATUS_TIMEOUT_S)
        assert isinstance(result, dict)
        return result

    async def answers(self) -> bool:
        """Does the daemon answer on its control socket now (False while it is killed)?"""
        try:
            await self.status()
        except (OSError, TimeoutError, DaemonUnreachable, RemoteError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class HilResult:
    recording: Recording
    report: dict[str, Any]
    workdir: Path
    lines: tuple[str, ...]
    probe: Any = None  # what the probe returned
    run: dict[str, Any] = field(default_factory=dict)
    statuses: tuple[tuple[float, dict[str, Any]], ...] = ()
    t0_s: float = 0.0  # the scenario's t = 0 on the simulated clock (seconds after its epoch)

    @property
    def ledger_path(self) -> Path:
        return self.workdir / "ledger.sqlite"

    @property
    def daemon_log(self) -> Path:
        return self.workdir / "daemon.log"

    @property
    def daemon_exit_code(self) -> int | None:
        """The exit code of the daemon's SIGTERM at the end of the run (0: a clean shutdown)."""
        for line in reversed(self.lines):
            if line.startswith("daemon stopped, exit code "):
                code = line.removeprefix("daemon stopped, exit code ")
                return None if code == "None" else int(code)
        return None

    def daemon_log_tail(self, count: int = 40) -> str:
        """The run's own output and the daemon log's last lines, for a failure message."""
        return _tail(self.workdir, list(self.lines), count)

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's structured log lines (JSON), across restarts."""
        events = []
        for line in self.daemon_log.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def errors_logged(self) -> list[dict[str, Any]]:
        """Log lines at level error or above: a daemon that logs none did nothing it knows is wrong."""
        return [e for e in self.log_events() if e.get("level") in ("error", "critical")]

    async def sessions(self) -> list[Session]:
        async with await Ledger.open(self.ledger_path) as ledger:
            return await ledger.list_sessions()


async def run_hil(
    loaded: LoadedScenario,
    workdir: Path,
    *,
    speed: float | None = None,
    probe: Callable[[HilRun], Coroutine[Any, Any, Any]] | None = None,
    status_every_s: float | None = None,
) -> HilResult:
    """Run `loaded` live with the daemon under test in `workdir` (an existing directory: the
    daemon's configuration, ledger, control socket, log and the meter's pty link go there); the
    report is `simulator.metrics.report`.

    The probe, if any, must finish before the scenario does (it is cancelled then, and the run
    fails); an exception it raises fails the run after the garage and the daemon have stopped.
    With `status_every_s` the daemon's status is sampled every that many simulated seconds into
    `HilResult.statuses` (scenario time, answer); a daemon that does not answer (killed, restarting)
    leaves a gap.
    """
    listen = f"127.0.0.1:{free_tcp_port()}"
    lines: list[str] = []
    outcome: dict[str, Any] = {}
    statuses: list[tuple[float, dict[str, Any]]] = []
    daemon = daemon_around(workdir, listen, out=lines.append)

    @contextlib.asynccontextmanager
    async def around(sim: SimulationRun) -> AsyncIterator[None]:
        async with daemon(sim):
            view = HilRun(loaded, sim, workdir)
            tasks: list[asyncio.Task[Any]] = []
            if status_every_s is not None:
                tasks.append(asyncio.create_task(_sample(view, status_every_s, statuses), name="hil-status"))
            task = None if probe is None else asyncio.create_task(probe(view), name="hil-probe")
            try:
                yield
            finally:
                outcome["t0_s"] = sim.t0_s
                for sampler in tasks:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                if task is not None:
                    if not task.done():
                        task.cancel()
                        outcome["unfinished"] = True
                    with contextlib.suppress(asyncio.CancelledError):
                        outcome["value"] = await _result(task)

    try:
        recording, run = await run_live(
            loaded,
            speed=speed,
            csms_url=f"ws://{listen}/ocpp",
            meter_link=workdir / "ttyHAN",
            around=around,
            out=lines.append,
        )
    except Exception as exc:
        exc.add_note(_tail(workdir, lines))
        raise
    if outcome.get("unfinished"):
        raise AssertionError(f"the probe did not finish before the scenario ended\n{_tail(workdir, lines)}")
    data = report(recording)
    data.update(run)
    return HilResult(
        recording,
        data,
        workdir,
        tuple(lines),
        outcome.get("value"),
        run,
        tuple(statuses),
        outcome.get("t0_s", 0.0),
    )


async def _sample(view: HilRun, every_s: float, into: list[tuple[float, dict[str, Any]]]) -> None:
    at_s = 0.0
    while True:
        await view.sleep_until(at_s)
        with contextlib.suppress(OSError, TimeoutError, DaemonUnreachable, RemoteError):
            into.append((view.now_s(), await view.status()))
        at_s = max(at_s + every_s, view.now_s())


async def _result(task: asyncio.Task[Any]) -> Any:
    return await task


def _tail(workdir: Path, lines: list[str], count: int = 30) -> str:
    log = workdir / "daemon.log"
    text = ""
    with contextlib.suppress(OSError):
        text = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])
    return "run output:\n" + "\n".join(lines[-count:]) + f"\ndaemon log ({log}):\n" + text
