"""`load_settings`: read `site.toml`, apply SITECTL_* environment overrides, validate, cross-check.

Every problem is collected and raised together as one `ConfigError`, each located by its path in the
configuration and, where known, by `file:line` or the environment variable that set it.

Environment overrides are `SITECTL_<SECTION>__<KEY>` (case-insensitive), parsed by pydantic-settings'
`EnvSettingsSource`; they win over the file. The list sections (`[[fuses]]`, `[[chargers]]`) cannot be
overridden: the topology is the file `sitectl config check` verified. Other `SITECTL_*` variables
without `__` (such as SITECTL_TESTS_STRICT) are not configuration and are ignored; a `SITECTL_X__Y`
whose section is unknown is an error, so a misspelt override is not silently lost.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.exceptions import SettingsError

from controller.settings.checks import ConfigProblem, Loc, SiteCheck, format_loc
from controller.settings.model import CROSS_CHECK_ERROR, LIST_SECTIONS, SiteSettings
from controller.settings.sections import PATTERN_HELP
from controller.settings.tomlpos import key_lines, line_of

ENV_PREFIX = "SITECTL_"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem], source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        where = f" in {source}" if source else ""
        super().__init__(
            "\n".join([f"invalid site configuration{where} ({count}):", *map(str, self.problems)])
        )


def load_settings(
    path: Path | None,
    env: Mapping[str, str],
    *,
    failsafe_budget_check: SiteCheck | None = None,
) -> SiteSettings:
    """Load the site configuration from `path` (None: environment only) and `env`.

    `failsafe_budget_check` is the hook for the check that needs the electrical model (all chargers
    at their safe current plus worst-case base load fit every fuse); the composition root passes the
    allocation package's implementation. Raises `ConfigError` listing every problem.
    """
    source = str(path) if path is not None else None
    file_data: dict[str, Any] = {}
    lines: dict[Loc, int] = {}
    if path is not None:
        text = _read(path)
        try:
            file_data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([_toml_problem(path, exc)], source) from None
        lines = key_lines(text)

    env_vars, env_paths, problems = _split_env(env)
    try:
        env_data = _MappingEnvSource(SiteSettings, env_vars)()
    except SettingsError as exc:
        # pydantic-settings names the field ("policy") whose JSON value it could not parse.
        field = re.search(r'field "([^"]+)"', str(exc))
        section = field[1] if field else ""
        variable = env_paths.get((section,))
        problems.append(
            ConfigProblem(
                (section,) if section else (),
                "not valid JSON for a whole section",
                f"environment {variable}" if variable else "environment",
            )
        )
        env_data = {}

    def locate(loc: Loc) -> str | None:
        for end in range(len(loc), 0, -1):
            variable = env_paths.get(tuple(str(p) for p in loc[:end]))
            if variable is not None:
                return f"environment {variable}"
        line = line_of(lines, loc)
        if path is not None:
            return f"{path}:{line}" if line is not None else str(path)
        return None

    settings: SiteSettings | None = None
    try:
        settings = SiteSettings.model_validate(_merge(file_data, env_data))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error["type"] == CROSS_CHECK_ERROR:
                found: list[ConfigProblem] = error["ctx"]["problems"]
                problems += [ConfigProblem(p.loc, p.message, locate(p.loc)) for p in found]
            else:
                problems.append(_pydantic_problem(error, locate))
    if settings is not None and failsafe_budget_check is not None and not problems:
        problems += [
            ConfigProblem(p.loc, p.message, p.source or locate(p.loc))
            for p in failsafe_budget_check(settings)
        ]
    if problems or settings is None:
        raise ConfigError(problems, source)
    return settings


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem((), "no such file", str(path))], str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [ConfigProblem((), f"not UTF-8 text: {exc.reason}", str(path))], str(path)
        ) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem((), f"cannot read: {exc.strerror}", str(path))], str(path)) from None


def _toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if match is None:
        return ConfigProblem((), f"invalid TOML: {message}", str(path))
    reason = message[: match.start()].rstrip()
    return ConfigProblem((), f"invalid TOML (column {match[2]}): {reason}", f"{path}:{match[1]}")


def _split_env(
    env: Mapping[str, str],
) -> tuple[dict[str, str], dict[tuple[str, ...], str], list[ConfigProblem]]:
    """The SITECTL_* variables that configure the site, the path each sets, and misuses."""
    sections = set(SiteSettings.model_fields)
    accepted: dict[str, str] = {}
    paths: dict[tuple[str, ...], str] = {}
    problems: list[ConfigProblem] = []
    for name, value in sorted(env.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        if path[0] in LIST_SECTIONS:
            problems.append(
                ConfigProblem(
                    (path[0],),
                    f"[[{path[0]}]] cannot be overridden from the environment; edit the file",
                    f"environment {name}",
                )
            )
        elif path[0] in sections:
            accepted[name] = value
            paths[path] = name
        elif len(path) > 1:
            problems.append(
                ConfigProblem(
                    (),
                    f"unknown section {path[0]!r} (sections: {', '.join(sorted(sections))})",
                    f"environment {name}",
                )
            )
    return accepted, paths, problems


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading an injected mapping instead of `os.environ`,
    so loading is deterministic and tests need not touch the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = dict(env)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._mapping.items()}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _pydantic_problem(error: Any, locate: Any) -> ConfigProblem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key missing"
    elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in PATTERN_HELP:
        message = f"{PATTERN_HELP[error['ctx']['pattern']]} (got {error.get('input')!r})"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, str | int | float | bool) and kind not in ("value_error", "assertion_error"):
            message += f" (got {value!r})"
    return ConfigProblem(loc, message, locate(loc))


__all__ = ["ConfigError", "ConfigProblem", "SiteCheck", "format_loc", "load_settings"]
