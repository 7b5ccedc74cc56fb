"""The README's first command: the embedded default runs and ends with a clean summary."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import REPO_ROOT, sitectl_argv, subprocess_env

pytestmark = pytest.mark.integration


def test_demo_reads_the_simulated_meter_live_and_summarises() -> None:
    done = subprocess.run(
        sitectl_argv("demo", "--speed", "40", "--duration", "90"),
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(" list 2: " in line for line in lines)
    summary = lines[-1]
    assert summary.startswith("summary: meter sent ")
    assert "dropped none" in summary
