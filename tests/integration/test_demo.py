"""The README's first command: the simulated garage with the real daemon, ending with a summary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, sitectl_argv, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.hil]


def test_demo_runs_the_garage_with_the_daemon_and_summarises(tmp_path: Path) -> None:
    done = subprocess.run(
        sitectl_argv(
            "demo", "--speed", "10", "--duration", "240", "--every", "5", "--workdir", str(tmp_path)
        ),
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # The daemon's own live table was shown, with the fuses and the chargers it drives.
    assert "fuse          limit" in out
    assert "CP-01" in out
    summary = out[out.index("summary of demo-garage") :]
    assert "energy per car:" in summary
    assert "highest line current against its limit: main" in summary
    assert "trips: 0" in summary
    assert "fairness (Jain index" in summary
    # The sessions the daemon recorded are in its ledger.
    assert (tmp_path / "ledger.sqlite").exists()
