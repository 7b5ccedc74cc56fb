"""`sitectl chargers adopt` on the site file alone (no daemon running): what it writes and refuses."""

from __future__ import annotations

import re
import stat
import tomllib
from pathlib import Path

import pytest

from controller.cli import main
from controller.settings import ConfigError, load_settings
from controller.settings.edit import check_text, replace_file, with_table
from drivers.ocpp.passwords import hash_password, verify_password

SITE = """\
# Solbakken: garage B, commissioned 2026-11-02 (keep this comment)
[site]
id = "b"

[grid]
type = "IT"

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c1"
parent = "main"
limit_a = 32   # circuit 1, cable 6 mm²

[ocpp]
listen = "127.0.0.1:9000"
adoption = true

[[chargers]]
id = "CP-01"
protocol = "ocpp"
fuse = "c1"
lines = ["L1", "L2", "L3"]
max_a = 32
safe_current_a = 6
password_hash = "{password_hash}"

[storage]
path = "{folder}/ledger.sqlite"

[control]
socket_path = "{folder}/control.sock"
"""


pytestmark = pytest.mark.usefixtures("no_site_env")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(folder=tmp_path, password_hash=hash_password("cp-01-password-000", log2_n=4)))
    path.chmod(0o640)
    return path


def adopt(site: Path, *extra: str) -> int:
    return main(["chargers", "adopt", "CP-02", "--config", str(site), "--fuse", "c1", *extra])


def test_adopt_appends_a_checked_charger_and_prints_its_password_once(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = site.read_text()
    code = adopt(site, "--lines", "L2,L3", "--max-a", "16", "--safe-a", "0", "--space", "P-017")
    out = capsys.readouterr().out
    assert code == 0, out
    after = site.read_text()
    # The electrician's file is kept as it was, comments included; the charger is added at its end.
    assert after.startswith(before.rstrip("\n"))
    assert "# circuit 1, cable 6 mm²" in after
    assert (site.parent / "site.toml.bak").read_text() == before
    assert stat.S_IMODE(site.stat().st_mode) == 0o640
    added = tomllib.loads(after)["chargers"][-1]
    assert added["id"] == "CP-02"
    assert added["lines"] == ["L2", "L3"]
    assert added["space"] == "P-017"
    match = re.search(r"password \(set it on the charger; only its hash is stored\): (\S+)", out)
    assert match is not None
    assert match.group(1) not in after
    assert verify_password(match.group(1), added["password_hash"])
    # The daemon would start on it.
    settings = load_settings(site, {})
    assert [c.id for c in settings.chargers] == ["CP-01", "CP-02"]
    assert "the daemon is not running" in out


def test_a_password_can_be_given_on_standard_input(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("the-chargers-own-password\n"))
    code = adopt(site, "--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6", "--password-stdin")
    out = capsys.readouterr().out
    assert code == 0
    assert "the-chargers-own-password" not in out
    added = tomllib.loads(site.read_text())["chargers"][-1]
    assert verify_password("the-chargers-own-password", added["password_hash"])


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        # An unknown fuse: the charger would hang nowhere.
        (["--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6", "--fuse", "c9"], "c9"),
        # One line is not a circuit on IT (single-phase takes two lines).
        (["--lines", "L1", "--max-a", "16", "--safe-a", "6"], "lines"),
        # Both chargers at 16 A safe current: a dead controller would overload circuit c1.
        (["--lines", "L1,L2,L3", "--max-a", "32", "--safe-a", "32"], "fail-safe budget"),
        # Already configured.
        (["--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6", "--id", "CP-01"], "already configured"),
    ],
)
def test_a_charger_that_would_make_the_site_invalid_is_not_written(
    site: Path, capsys: pytest.CaptureFixture[str], extra: list[str], reason: str
) -> None:
    before = site.read_bytes()
    assert adopt(site, *extra) == 2
    err = capsys.readouterr().err
    assert reason in err
    assert site.read_bytes() == before
    assert not (site.parent / "site.toml.bak").exists()
    assert sorted(p.name for p in site.parent.iterdir()) == ["site.toml"]


def test_a_broken_site_file_is_not_touched(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.write_text(site.read_text().replace("limit_a = 63", "limit_a = -63"))
    before = site.read_bytes()
    assert adopt(site, "--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6") == 2
    assert "invalid as it is" in capsys.readouterr().err
    assert site.read_bytes() == before


def test_under_mutual_tls_no_password_is_made(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = site.read_text().replace("adoption = true", "adoption = true\nsecurity_profile = 3")
    text = text.replace('listen = "127.0.0.1:9000"', 'listen = "127.0.0.1:9000"\ncert_file = "c.pem"')
    text = text.replace("adoption = true\n", 'adoption = true\nkey_file = "k.pem"\nca_file = "ca.pem"\n')
    site.write_text(text)
    load_settings(site, {})  # the test's own premise: a valid profile-3 site
    assert adopt(site, "--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6") == 0
    assert "password" not in capsys.readouterr().out
    assert "password_hash" not in tomllib.loads(site.read_text())["chargers"][-1]


def test_with_table_on_an_empty_file_and_check_text_leaves_nothing_behind(tmp_path: Path) -> None:
    text = with_table("", "fuses", {"id": "main", "limit_a": 63}, comment="x")
    assert text == '# x\n[[fuses]]\nid = "main"\nlimit_a = 63\n'
    with pytest.raises(ConfigError):
        check_text(text, tmp_path / "site.toml", {}, failsafe_budget_check=None)
    assert list(tmp_path.iterdir()) == []


def test_replace_file_keeps_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text("old\n")
    backup = replace_file(path, "new\n")
    assert path.read_text() == "new\n"
    assert backup.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.toml", "f.toml.bak"]


def test_adopt_a_modbus_charger_writes_its_modbus_table_after_the_same_checks(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = "rtu:///dev/ttyUSB1?baudrate=19200"
    base = ["--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6", "--modbus", endpoint]
    before = site.read_text()
    # An ABB Terra AC has no fail-safe: refused unless accepted, and the file is left as it was.
    assert adopt(site, *base, "--template", "abb_terra_ac", "--unit", "3", "--no-reload") == 2
    assert "has no fail-safe" in capsys.readouterr().err
    assert site.read_text() == before
    code = adopt(
        site, *base, "--template", "abb_terra_ac", "--unit", "3", "--accept-no-failsafe", "--no-reload"
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "password" not in out
    charger = load_settings(site, {}).charger("CP-02")
    assert charger.protocol == "modbus" and charger.password_hash is None
    assert charger.modbus is not None
    assert (charger.modbus.endpoint, charger.modbus.register_map, charger.modbus.unit_id) == (
        endpoint,
        "abb_terra_ac",
        3,
    )
    assert charger.modbus.accept_no_failsafe
    assert tomllib.loads(site.read_text())["chargers"][-1]["modbus"]["register_map"] == "abb_terra_ac"


def test_adopt_a_modbus_charger_needs_its_template(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = adopt(
        site, "--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6", "--modbus", "tcp://10.0.0.9:502"
    )
    assert code == 2
    assert "--template" in capsys.readouterr().err
