"""`sitectl config check FILE`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from controller.cli import main
from tests.support import REPO_ROOT, sitectl_argv, subprocess_env

EXAMPLE = REPO_ROOT / "config" / "site.example.toml"


pytestmark = pytest.mark.usefixtures("no_site_env")


def test_example_is_ok_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE}\n")
    assert "site solbakken-brl (Europe/Oslo), IT 230 V" in out
    assert "chargers: 6 (5 ocpp, 1 modbus; 3 three-phase, 3 single-phase)" in out
    assert "fail-safe budget: fits" in out


def test_safe_currents_that_would_blow_a_fuse_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Raise every safe current to the charger's maximum: a dead controller would then let all of
    # them run flat out, which the main fuse cannot carry.
    text = EXAMPLE.read_text()
    text = re.sub(r"safe_current_a = \d+", "safe_current_a = 16", text)
    text = text.replace("limit_a = 125", "limit_a = 40")
    site = tmp_path / "site.toml"
    site.write_text(text)
    assert main(["config", "check", str(site)]) == 2
    err = capsys.readouterr().err
    assert "fail-safe budget" in err
    assert "fuse 'main'" in err


def test_missing_tls_files_are_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    err = capsys.readouterr().err
    if not Path("/etc/sitectl/ca.pem").exists():
        assert "warning: mqtt.ca_file /etc/sitectl/ca.pem does not exist here" in err


def test_environment_overrides_are_listed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITECTL_POLICY__SAFETY_MARGIN_A", "3")
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert "environment overrides: SITECTL_POLICY__SAFETY_MARGIN_A" in capsys.readouterr().out


def test_every_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "site.toml"
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('type = "IT" ', 'type = "XX" ').replace(
        'max_a = 16\nsafe_current_a = 6\nspace = "P-006"',
        'max_amps = 16\nsafe_current_a = 6\nspace = "P-006"',
    )
    broken.write_text(text, encoding="utf-8")
    assert main(["config", "check", str(broken)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = captured.err.splitlines()
    assert errors[0] == f"invalid site configuration in {broken} (3 problems):"
    assert any(line.endswith("grid.type: Input should be 'IT' or 'TN' (got 'XX')") for line in errors)
    assert any(line.endswith("chargers[5].max_amps: unknown key") for line in errors)
    assert any(line.endswith("chargers[5].max_a: required key missing") for line in errors)


def test_runs_as_a_program(tmp_path: Path) -> None:
    ok = subprocess.run(
        sitectl_argv("config", "check", str(EXAMPLE)), env=subprocess_env(), capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\n", encoding="utf-8")
    failed = subprocess.run(
        sitectl_argv("config", "check", str(bad)), env=subprocess_env(), capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert f"{bad}:1: invalid TOML" in failed.stderr


def test_sitectl_check_is_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    assert "fail-safe budget: fits" in capsys.readouterr().out
