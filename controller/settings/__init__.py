"""Site configuration (DESIGN.md §7.5): `site.toml` plus SITECTL_* environment overrides.

    settings = load_settings(Path("/etc/sitectl/site.toml"), os.environ)

`config/site.example.toml` documents every key.
"""

from controller.settings.checks import ConfigProblem, SiteCheck, site_problems
from controller.settings.loader import ConfigError, load_settings
from controller.settings.model import SiteSettings
from controller.settings.sections import (
    AuthorizationSection,
    ChargerSection,
    ControlSection,
    FuseSection,
    GridSection,
    LogSection,
    MeterSection,
    ModbusDefaultsSection,
    ModbusSection,
    MqttSection,
    OcppSection,
    PolicySection,
    SiteSection,
    StorageSection,
)

__all__ = [
    "AuthorizationSection",
    "ChargerSection",
    "ConfigError",
    "ConfigProblem",
    "ControlSection",
    "FuseSection",
    "GridSection",
    "LogSection",
    "MeterSection",
    "ModbusDefaultsSection",
    "ModbusSection",
    "MqttSection",
    "OcppSection",
    "PolicySection",
    "SiteCheck",
    "SiteSection",
    "SiteSettings",
    "StorageSection",
    "load_settings",
    "site_problems",
]
