"""Durability: a process writing sessions is killed with SIGKILL over and over.

Every session change the writer printed (it prints only after COMMIT returned) must be in the
ledger afterwards, the file must pass its integrity check, and each stored version must have its
outbox row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO
from uuid import UUID

import pytest

from controller.sessions.ledger import Ledger
from tests.support import ledger_writer, subprocess_env

pytestmark = pytest.mark.integration


class _Interpreter:
    """The writer as a fresh Python process, as the daemon runs."""

    def __init__(self, path: Path, run: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.ledger_writer", str(path), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=subprocess_env(),
            text=True,
        )
        assert self._proc.stdout is not None
        self.lines: IO[str] = self._proc.stdout

    def sigkill(self) -> None:
        self._proc.send_signal(signal.SIGKILL)

    def reap(self) -> int:
        """Kills it if it still runs; its exit code (negative: the signal that ended it)."""
        self._proc.kill()
        code = self._proc.wait()
        self.lines.close()
        return code


class _Forked:
    """The writer forked from this process: the same SIGKILL of a real process in the middle of its
    writes, without an interpreter start-up for each of hundreds of kills."""

    def __init__(self, path: Path, run: int) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                os.close(read_fd)
                asyncio.run(ledger_writer.write_forever(path, run, os.fdopen(write_fd, "w")))
            finally:
                os._exit(1)
        os.close(write_fd)
        self._pid = pid
        self.lines: IO[str] = os.fdopen(read_fd)

    def sigkill(self) -> None:
        os.kill(self._pid, signal.SIGKILL)

    def reap(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        _, status = os.waitpid(self._pid, 0)
        self.lines.close()
        return os.waitstatus_to_exitcode(status)


def _kill_during_writes(
    path: Path, run: int, rng: random.Random, writer: type[_Interpreter] | type[_Forked]
) -> list[tuple[str, int]]:
    proc = writer(path, run)
    printed: list[tuple[str, int]] = []
    wanted = rng.randint(1, 4)
    try:
        while len(printed) < wanted:
            line = proc.lines.readline()
            if not line:
                break
            session_id, version = line.split()
            printed.append((session_id, int(version)))
        # Land the kill at a random point of the next writes, often inside a transaction.
        time.sleep(rng.uniform(0, 0.01))
        proc.sigkill()
        # What it printed before dying was committed too.
        for line in proc.lines:
            session_id, version = line.split()
            printed.append((session_id, int(version)))
    finally:
        code = proc.reap()
    assert code == -signal.SIGKILL, "the writer died on its own instead of being killed"
    return printed


async def _check(path: Path, printed: list[tuple[str, int]]) -> None:
    async with await Ledger.open(path) as ledger:  # runs PRAGMA integrity_check
        assert await ledger.pragma("integrity_check") == "ok"
        stored = {s.session_id: s for s in await ledger.list_sessions()}
        announced: set[tuple[str, int]] = set()
        for row in await ledger.pending(limit=1_000_000):
            payload = json.loads(row.payload)
            announced.add((payload["session_id"], payload["seq"]))
    missing = [(sid, v) for sid, v in printed if UUID(sid) not in stored or stored[UUID(sid)].version < v]
    assert not missing, f"{len(missing)} committed changes lost, e.g. {missing[:3]}"
    for session in stored.values():
        for version in range(1, session.version + 1):
            assert (str(session.session_id), version) in announced, "a session version without its message"


def _run_kills(tmp_path: Path, kills: int, writer: type[_Interpreter] | type[_Forked]) -> None:
    path = tmp_path / "ledger.sqlite"
    rng = random.Random(kills)
    printed: list[tuple[str, int]] = []
    for run in range(kills):
        printed += _kill_during_writes(path, run, rng, writer)
    assert len(printed) >= kills
    asyncio.run(_check(path, printed))


def test_sigkill_during_ledger_writes_loses_nothing_committed(tmp_path: Path) -> None:
    _run_kills(tmp_path, 10, _Interpreter)


@pytest.mark.slow
def test_200_sigkills_during_ledger_writes(tmp_path: Path) -> None:
    _run_kills(tmp_path, 200, _Forked)
