"""The fail-safe budget wired into the site configuration's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.allocation.settings_check import failsafe_budget_problems
from controller.settings import ConfigError, load_settings
from tests.support import REPO_ROOT

SITE = """\
[site]
id = "budget-site"

[grid]
type = "IT"

[policy]
safety_margin_a = 2.0

[[fuses]]
id = "main"
limit_a = 63
base_load_a = {base}

[[fuses]]
id = "c01"
parent = "main"
limit_a = 32

[ocpp]
security_profile = 1
{chargers}
"""

CHARGER = """
[[chargers]]
id = "CP-{i:02d}"
protocol = "ocpp"
fuse = "c01"
lines = {lines}
max_a = 32
safe_current_a = {safe}
password_hash = "$scrypt$x"
"""


def _site(tmp_path: Path, base: float, chargers: list[tuple[str, float]]) -> Path:
    text = SITE.format(
        base=base,
        chargers="".join(
            CHARGER.format(i=i, lines=lines, safe=safe) for i, (lines, safe) in enumerate(chargers)
        ),
    )
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_site_whose_safe_currents_fit_loads(tmp_path: Path) -> None:
    # Three pair chargers at 8 A, one per pair: sqrt(3) * 8 = 13.9 A per line on c01 and, with 40 A
    # of base load, 53.9 A on main; both within their limits less 2 A.
    pairs = ['["L1", "L2"]', '["L2", "L3"]', '["L3", "L1"]']
    path = _site(tmp_path, 40.0, [(p, 8.0) for p in pairs])
    settings = load_settings(path, {}, failsafe_budget_check=failsafe_budget_problems)
    assert settings.site.id == "budget-site"


def test_a_site_whose_safe_currents_do_not_fit_is_refused_at_the_fuse(tmp_path: Path) -> None:
    # Four three-line chargers at 8 A: 32 A on every line of c01 (limit 32 - 2), 32 + 30 on main.
    path = _site(tmp_path, 30.0, [('["L1", "L2", "L3"]', 8.0)] * 4)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {}, failsafe_budget_check=failsafe_budget_problems)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 6, messages
    assert any("fuses[1]" in m and "32.0 A on L1 of fuse 'c01'" in m for m in messages), messages
    assert any("fuses[0]" in m and "62.0 A on L3 of fuse 'main'" in m for m in messages), messages


def test_the_example_configuration_passes_its_budget() -> None:
    settings = load_settings(REPO_ROOT / "config" / "site.example.toml", {})
    assert failsafe_budget_problems(settings) == []
