"""`sitectl balance SNAPSHOT` as an electrician runs it: a real process, a file or standard input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controller.allocation import allocate
from controller.allocation.snapshot_json import allocation_to_json, snapshot_from_json, snapshot_to_json
from tests.support import REPO_ROOT, sitectl_argv, subprocess_env
from tests.unit.allocation.reference import random_site

CASE = REPO_ROOT / "tests" / "data" / "allocation" / "it_meter_without_l2.json"


def _balance(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sitectl_argv("balance", *args),
        input=stdin,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )


def test_balance_prints_the_allocation_of_a_snapshot_file(tmp_path: Path) -> None:
    snapshot = json.loads(CASE.read_text())["snapshot"]
    path = tmp_path / "site.json"
    path.write_text(json.dumps(snapshot))
    result = _balance(str(path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(result.stdout.splitlines()) > 10  # indented for reading
    assert out["chargers"]["a"] == {
        "current_a": 10.0,
        "target_a": 10.0,
        "state": "charging",
        "limited_by": "fuse:main:L2",
    }
    assert out["fuses"]["main"] == {"limit_a": 63.0, "predicted_a": {"L1": 60.0, "L2": 60.0, "L3": 43.72}}


def test_balance_reads_standard_input_and_prints_one_line_when_compact(tmp_path: Path) -> None:
    # What the daemon prints (snapshot_to_json) is what balance reads back.
    snapshot = random_site(11, 80, 12, "IT", smoothing=True, tight=True)
    text = json.dumps(snapshot_to_json(snapshot))
    result = _balance("--compact", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout) == allocation_to_json(allocate(snapshot_from_json(json.loads(text))))


def test_a_malformed_snapshot_exits_2_naming_the_field(tmp_path: Path) -> None:
    snapshot = json.loads(CASE.read_text())["snapshot"]
    snapshot["chargers"][1]["lines"][1] = "L5"
    result = _balance("-", stdin=json.dumps(snapshot))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "chargers[1].lines[1]" in result.stderr


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    missing = _balance(str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    garbage = _balance("-", stdin='{"version": 1,')
    assert garbage.returncode == 2
    assert "is not JSON" in garbage.stderr
