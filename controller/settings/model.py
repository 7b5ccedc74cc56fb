"""`SiteSettings`: the whole site configuration, validated and cross-checked."""

from typing import Annotated, Any, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from controller.settings.checks import site_problems
from controller.settings.sections import (
    AuthorizationSection,
    ChargerSection,
    ControlSection,
    FuseSection,
    GridSection,
    LogSection,
    MeterSection,
    ModbusDefaultsSection,
    MqttSection,
    OcppSection,
    PolicySection,
    SiteSection,
    StorageSection,
    phases_from_lines,
)

CROSS_CHECK_ERROR = "site_cross_checks"
"""pydantic error type of failed cross-checks; its `ctx["problems"]` holds each `ConfigProblem`, so
`load_settings` can report every one at its own location."""

LIST_SECTIONS = ("fuses", "chargers")


class SiteSettings(BaseSettings):
    """The site configuration of DESIGN.md §7.5. Construct it with `load_settings`; an instance has
    always passed the structural checks and the cross-checks of `controller.settings.checks`."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        env_prefix="SITECTL_",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    site: SiteSection
    """[site]: id and time zone."""
    grid: GridSection
    """[grid]: IT or TN, nominal voltage."""
    policy: PolicySection = PolicySection()
    """[policy]: sharing and timing; every key has a default."""
    meter: MeterSection | None = None
    """Absent: no meter; the site runs every charger at its safe current."""
    fuses: Annotated[tuple[FuseSection, ...], Field(min_length=1)]
    """[[fuses]]: the fuse tree, exactly one root."""
    ocpp: OcppSection | None = None
    """Absent: no OCPP listener (a Modbus-only site)."""
    chargers: tuple[ChargerSection, ...] = ()
    """[[chargers]]: the charging points (none: every charger must be adopted)."""
    modbus: ModbusDefaultsSection = ModbusDefaultsSection()
    """[modbus]: the Modbus master; every key has a default."""
    mqtt: MqttSection | None = None
    """Absent: no uplink; sessions wait in the outbox."""
    authorization: AuthorizationSection = AuthorizationSection()
    """[authorization]: what happens to tags on no list."""
    storage: StorageSection = StorageSection()
    """[storage]: the ledger path."""
    control: ControlSection = ControlSection()
    """[control]: the local control socket."""
    log: LogSection = LogSection()
    """[log]: log level and format."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Building a SiteSettings directly must not depend on the process environment;
        # `load_settings` is the one place that merges the file with SITECTL_* variables.
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _default_min_from_policy(cls, data: Any) -> Any:
        """A charger without `min_a` gets `policy.min_current_a`."""
        if not isinstance(data, dict):
            return data
        policy = data.get("policy")
        chargers = data.get("chargers")
        if not isinstance(policy, dict) or "min_current_a" not in policy or not isinstance(chargers, list):
            return data
        try:
            default_min_a = float(policy["min_current_a"])
        except (TypeError, ValueError):
            return data  # the policy's own error is reported; don't repeat it on every charger
        filled = [
            {**c, "min_a": default_min_a} if isinstance(c, dict) and "min_a" not in c else c for c in chargers
        ]
        return {**data, "chargers": filled}

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems = site_problems(self)
        if problems:
            summary = "; ".join(str(p) for p in problems)
            raise PydanticCustomError(
                CROSS_CHECK_ERROR, "{summary}", {"summary": summary, "problems": problems}
            )
        return self

    def fuse(self, fuse_id: str) -> FuseSection:
        for fuse in self.fuses:
            if fuse.id == fuse_id:
                return fuse
        raise KeyError(fuse_id)

    def charger(self, charger_id: str) -> ChargerSection:
        for charger in self.chargers:
            if charger.id == charger_id:
                return charger
        raise KeyError(charger_id)

    def fuse_path(self, fuse_id: str) -> tuple[str, ...]:
        """Ids from `fuse_id` up to the root, inclusive: the fuses a load under `fuse_id` loads."""
        parents = {f.id: f.parent for f in self.fuses}
        path: list[str] = []
        current: str | None = fuse_id
        while current is not None:
            path.append(current)
            current = parents[current]
        return tuple(path)

    def charger_phases(self, charger: ChargerSection) -> int:
        """Phases a charger delivers: from its wiring (TN: one line per phase; IT: two lines for one)."""
        return phases_from_lines(self.grid.type, len(charger.lines)) or len(charger.lines)
