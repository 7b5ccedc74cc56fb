"""The systemd unit: verify, exposure score, consistency with the settings' defaults, and that the
Python stack runs under MemoryDenyWriteExecute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.settings import ControlSection, StorageSection
from tests.support import REPO_ROOT, require_program

pytestmark = pytest.mark.integration

UNIT = REPO_ROOT / "systemd" / "sitectl.service"
CHECK = REPO_ROOT / ".ci" / "check-systemd"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def run_check(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), *map(str, units)], capture_output=True, text=True, timeout=120)


def test_unit_passes_verify_and_scores_at_most_2() -> None:
    require_program("systemd-analyze")
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sitectl.service: verify OK" in result.stdout
    match = re.search(r"sitectl\.service: exposure level ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match[1]) <= 2.0


def test_check_fails_on_a_unit_warning(tmp_path: Path) -> None:
    require_program("systemd-analyze")
    broken = tmp_path / "sitectl.service"
    broken.write_text(UNIT.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHom=yes"))
    result = run_check(broken)
    assert result.returncode == 1
    assert "Unknown key 'ProtectHom'" in result.stderr


def test_check_fails_on_a_weak_unit(tmp_path: Path) -> None:
    require_program("systemd-analyze")
    weak = tmp_path / "weak.service"
    weak.write_text(
        textwrap.dedent("""\
            [Service]
            Type=notify
            ExecStart=/usr/bin/sitectl run --config /etc/sitectl/site.toml
            """)
    )
    result = run_check(weak)
    assert result.returncode == 1
    assert re.search(r"exposure level [0-9.]+ is above 2\.0", result.stderr)


def test_unit_runs_the_daemon_as_designed() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == ["/usr/bin/sitectl run --config /etc/sitectl/site.toml"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # sitectl's exit code for bad input
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["User"] == ["sitectl"]
    assert unit["SupplementaryGroups"] == ["dialout"]
    assert unit["MemoryDenyWriteExecute"] == ["yes"]


def test_unit_directories_match_the_settings_defaults() -> None:
    unit = unit_settings()
    assert StorageSection().path.parent == Path("/var/lib") / unit["StateDirectory"][0]
    assert ControlSection().socket_path.parent == Path("/run") / unit["RuntimeDirectory"][0]


def test_sysusers_and_tmpfiles_build_the_expected_tree(tmp_path: Path) -> None:
    sysusers = require_program("systemd-sysusers")
    tmpfiles = require_program("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles --root needs root to chown")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(
        [sysusers, f"--root={root}", str(REPO_ROOT / "systemd" / "sysusers.d" / "sitectl.conf")],
        check=True,
        capture_output=True,
    )
    groups = {
        fields[0]: fields
        for fields in (line.split(":") for line in (root / "etc" / "group").read_text().splitlines())
    }
    assert "sitectl" in groups["dialout"][3].split(",")
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^sitectl:x:\d+:\d+:[^:]*:/var/lib/sitectl:/usr/sbin/nologin$", passwd, re.MULTILINE)
    subprocess.run(
        [tmpfiles, f"--root={root}", "--create", str(REPO_ROOT / "systemd" / "tmpfiles.d" / "sitectl.conf")],
        check=True,
        capture_output=True,
    )
    config_dir = os.stat(root / "etc" / "sitectl")
    assert config_dir.st_mode & 0o7777 == 0o750
    assert (config_dir.st_uid, config_dir.st_gid) == (0, int(groups["sitectl"][2]))


MDWE_PROBE = """
import ctypes, mmap, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print("unsupported")
    sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("not enforced")
    sys.exit(0)
except OSError:
    pass
import json, sqlite3
import numpy as np
import aiomqtt, aiosqlite, ocpp, pydantic, pydantic_settings, pymodbus, serial, structlog, websockets
from controller.settings import load_settings
from pathlib import Path
load_settings(Path(sys.argv[1]), {})
a = np.random.default_rng(1).random((300, 3))
assert np.isfinite(np.linalg.norm(a @ a.T))
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
print("ok")
"""


def test_python_stack_runs_without_writable_executable_memory() -> None:
    """MemoryDenyWriteExecute=yes in the unit: the same kernel rule (prctl PR_SET_MDWE), applied to
    a child that imports the daemon's native dependencies and exercises numpy and SQLite."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE, str(REPO_ROOT / "config" / "site.example.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() in ("unsupported", "not enforced"):
        pytest.skip(f"kernel without PR_SET_MDWE ({result.stdout.strip()})")
    assert result.stdout.strip() == "ok"
