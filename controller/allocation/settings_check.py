"""The fail-safe budget as a site-configuration check (`load_settings(..., failsafe_budget_check=)`).

Adapts `check_failsafe_budget` to the settings' `SiteCheck` shape: the configured fuse tree, chargers
and safety margin become a snapshot with no meter and no cars (the budget assumes nothing about either),
and every fuse line that does not fit becomes a `ConfigProblem` located at that fuse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.allocation.allocator import check_failsafe_budget
from controller.allocation.model import Charger, Fuse, Grid, Policy, SiteSnapshot
from controller.settings.checks import ConfigProblem

if TYPE_CHECKING:
    from controller.settings.model import SiteSettings

# The budget does not depend on the time; a snapshot needs one.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def settings_snapshot(settings: SiteSettings, at_max: frozenset[str] = frozenset()) -> SiteSnapshot:
    """The configured site as a snapshot without meters or cars; the chargers in `at_max` (no
    fail-safe: they keep whatever they had) count at their maximum as their safe current."""
    policy = settings.policy
    return SiteSnapshot(
        now=_EPOCH,
        grid=Grid(type=settings.grid.type, nominal_voltage_v=settings.grid.nominal_voltage_v),
        fuses=tuple(
            Fuse(id=f.id, limit_a=f.limit_a, parent=f.parent, base_load_a=f.base_load_a)
            for f in settings.fuses
        ),
        chargers=tuple(
            Charger(
                id=c.id,
                fuse=c.fuse,
                lines=tuple(c.lines),
                max_a=c.max_a,
                min_a=c.min_a,
                safe_current_a=c.max_a if c.id in at_max else c.safe_current_a,
            )
            for c in settings.chargers
        ),
        policy=Policy(
            safety_margin_a=policy.safety_margin_a,
            min_current_a=policy.min_current_a,
            rotation_period_s=policy.rotation_period_s,
            deadband_a=policy.deadband_a,
            max_starts_per_hour=policy.max_starts_per_hour,
        ),
    )


def failsafe_budget_problems(
    settings: SiteSettings, at_max: frozenset[str] = frozenset()
) -> list[ConfigProblem]:
    check = check_failsafe_budget(settings_snapshot(settings, at_max))
    index = {f.id: i for i, f in enumerate(settings.fuses)}
    margin = settings.policy.safety_margin_a
    problems = []
    for reason in check.overloaded:
        _, fuse_id, line = reason.split(":")
        load = check.fuses[fuse_id]
        amps = load.predicted_a[("L1", "L2", "L3").index(line)]
        problems.append(
            ConfigProblem(
                ("fuses", index[fuse_id]),
                f"fail-safe budget: every charger at its safe current plus base load puts {amps:.1f} A"
                f" on {line} of fuse {fuse_id!r}, over its {load.limit_a:g} A less the {margin:g} A"
                f" safety margin{_at_max_note(at_max)}",
            )
        )
    return problems


def _at_max_note(at_max: frozenset[str]) -> str:
    if not at_max:
        return ""
    return f" ({', '.join(sorted(at_max))} counted at their maximum: no fail-safe)"
