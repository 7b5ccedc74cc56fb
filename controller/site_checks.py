"""The checks of a site configuration that need more than the configuration itself: the Modbus
chargers' device templates (read from disk) and the fail-safe budget (the electrical model), in
the shape `load_settings(..., failsafe_budget_check=)` takes. Every command that loads a site for
use (run, config check, chargers adopt, the simulator's daemon) uses this one."""

from __future__ import annotations

from controller.allocation.settings_check import failsafe_budget_problems
from controller.modbus_site import load_modbus_templates
from controller.settings import SiteSettings
from controller.settings.checks import ConfigProblem


def site_checks(settings: SiteSettings) -> list[ConfigProblem]:
    templates, problems = load_modbus_templates(settings)
    if problems:
        return problems
    at_max = frozenset(cid for cid, template in templates.items() if not template.has_failsafe)
    return failsafe_budget_problems(settings, at_max)
