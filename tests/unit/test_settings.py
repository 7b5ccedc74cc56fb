"""Site configuration: structure, unknown keys, environment overrides, cross-checks, locations."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from controller.settings import (
    ChargerSection,
    ConfigError,
    ConfigProblem,
    FuseSection,
    GridSection,
    SiteSection,
    SiteSettings,
    load_settings,
)
from controller.settings import sections as section_models
from tests.support import REPO_ROOT

EXAMPLE = REPO_ROOT / "config" / "site.example.toml"

BASE = """\
[site]
id = "test-site"

[grid]
type = "IT"

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c01"
parent = "main"
limit_a = 32

[ocpp]
security_profile = 1

[[chargers]]
id = "CP-01"
protocol = "ocpp"
fuse = "c01"
lines = ["L1", "L2"]
max_a = 32
safe_current_a = 6
password_hash = "$scrypt$x"
"""

Write = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def _write(text: str) -> Path:
        path = tmp_path / "site.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    return list(caught.value.problems)


def only_problem(path: Path, env: dict[str, str] | None = None) -> ConfigProblem:
    problems = problems_of(path, env)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


# ------------------------------------------------------------------------------------------ example


def test_example_loads_cleanly() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings.site.id == "solbakken-brl"
    assert settings.grid.type == "IT"
    assert settings.grid.nominal_voltage_v == 230
    assert [f.id for f in settings.fuses][:2] == ["main", "board-1"]
    assert settings.meter is not None
    assert settings.meter.fuse == "main"
    assert settings.mqtt is not None
    assert settings.mqtt.port == 8883
    assert settings.mqtt.tls
    assert {settings.charger_phases(c) for c in settings.chargers} == {1, 3}
    assert {c.protocol for c in settings.chargers} == {"ocpp", "modbus"}


def _all_sections() -> Iterable[tuple[str, type[BaseModel]]]:
    for name, model in vars(section_models).items():
        if (
            isinstance(model, type)
            and issubclass(model, section_models.Section)
            and model is not section_models.Section
        ):
            yield name, model


@pytest.mark.parametrize(("name", "model"), list(_all_sections()))
def test_every_field_is_documented_in_the_model_and_the_example(name: str, model: type[BaseModel]) -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    for field_name, info in model.model_fields.items():
        assert info.description, f"{name}.{field_name} has no docstring"
        # Each key appears at least once (possibly commented out) as `key = value  # meaning`.
        pattern = rf"^\s*#?\s*({field_name}\s*=|\[[\w.]*\.{field_name}\]).*#\s*\S"
        assert re.search(pattern, example, re.MULTILINE), f"{name}.{field_name} not documented in the example"


def test_every_site_settings_field_is_documented() -> None:
    for field_name, info in SiteSettings.model_fields.items():
        assert info.description, field_name


# -------------------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_section_is_named(write: Write) -> None:
    path = write(BASE + "\n[gird]\ntype = 'TN'\n")
    problem = only_problem(path)
    assert problem.path == "gird"
    assert problem.message == "unknown key"
    assert problem.source == f"{path}:{line_of(path.read_text(), '[gird]')}"


def test_unknown_key_in_a_list_entry_names_index_and_line(write: Write) -> None:
    text = BASE + textwrap.dedent("""
        [[chargers]]
        id = "CP-02"
        protocol = "ocpp"
        fuse = "c01"
        lines = ["L2", "L3"]
        max_a = 16
        safe_current_a = 0
        password_hash = "h"

        [[chargers]]
        id = "CP-03"
        protocol = "ocpp"
        fuse = "c01"
        lines = ["L2", "L3"]
        max_amps = 16
        max_a = 16
        safe_current_a = 0
        password_hash = "h"
        """)
    path = write(text)
    problem = only_problem(path)
    assert str(problem) == f"{path}:{line_of(text, 'max_amps')}: chargers[2].max_amps: unknown key"


def test_unknown_key_at_depth_three(write: Write) -> None:
    text = BASE.replace('protocol = "ocpp"', 'protocol = "modbus"').replace(
        'password_hash = "$scrypt$x"\n', ""
    )
    text += '\n[chargers.modbus]\nendpoint = "tcp://10.0.0.1:502"\nregister_map = "x"\nunit = 3\n'
    problem = only_problem(write(text))
    assert problem.path == "chargers[0].modbus.unit"
    assert problem.message == "unknown key"
    assert problem.source is not None
    assert problem.source.endswith(f":{line_of(text, 'unit = 3')}")


def test_unknown_key_in_inline_table_falls_back_to_the_table_line(write: Write) -> None:
    text = 'grid = { type = "IT", volts = 230 }\n' + BASE.replace('[grid]\ntype = "IT"', "")
    problem = only_problem(write(text))
    assert problem.path == "grid.volts"
    assert problem.source is not None
    assert problem.source.endswith(f":{line_of(text, 'grid = {')}")


def test_every_problem_is_reported_at_once(write: Write) -> None:
    text = BASE.replace('id = "test-site"', 'id = "test-site"\nname = "x"').replace(
        "limit_a = 63", "limit_a = -1"
    )
    text = text.replace('type = "IT"', 'type = "XY"')
    paths = {p.path for p in problems_of(write(text))}
    assert paths == {"site.name", "grid.type", "fuses[0].limit_a"}


def test_error_message_lists_file_and_count(write: Write) -> None:
    path = write(BASE.replace('type = "IT"', 'type = "XY"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert message.startswith(f"invalid site configuration in {path} (1 problem):")
    assert "grid.type: Input should be 'IT' or 'TN' (got 'XY')" in message


def test_missing_required_key(write: Write) -> None:
    problem = only_problem(write(BASE.replace("limit_a = 63\n", "")))
    assert (problem.path, problem.message) == ("fuses[0].limit_a", "required key missing")


# ------------------------------------------------------------------------------------ malformed file


def test_malformed_toml_names_line_and_column(write: Write) -> None:
    path = write(BASE + "\n[policy]\nsafety_margin_a 2.0\n")
    problem = only_problem(path)
    assert problem.source == f"{path}:{line_of(path.read_text(), 'safety_margin_a 2.0')}"
    assert problem.message.startswith("invalid TOML (column ")


def test_duplicate_toml_key_is_malformed(write: Write) -> None:
    problem = only_problem(write(BASE.replace("limit_a = 63", "limit_a = 63\nlimit_a = 64")))
    assert "invalid TOML" in problem.message


def test_missing_file(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "nope.toml")
    assert str(problem) == f"{tmp_path / 'nope.toml'}: no such file"


def test_binary_file_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in only_problem(path).message


# ------------------------------------------------------------------------------ environment overrides


def test_environment_overrides_the_file(write: Write) -> None:
    path = write(BASE + "\n[policy]\nsafety_margin_a = 2.0\nsettle_s = 7\n")
    settings = load_settings(path, {"SITECTL_POLICY__SAFETY_MARGIN_A": "3.5", "SITECTL_GRID__TYPE": "IT"})
    assert settings.policy.safety_margin_a == 3.5
    assert settings.policy.settle_s == 7  # the rest of the section still comes from the file


def test_environment_names_are_case_insensitive(write: Write) -> None:
    settings = load_settings(write(BASE), {"sitectl_policy__deadband_a": "0.5"})
    assert settings.policy.deadband_a == 0.5


def test_environment_creates_an_optional_section(write: Write) -> None:
    settings = load_settings(write(BASE), {"SITECTL_MQTT__URL": "mqtt://broker.local"})
    assert settings.mqtt is not None
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.prefix) == (
        "broker.local",
        1883,
        "garage/v1",
    )


def test_environment_booleans_and_ints_are_parsed(write: Write) -> None:
    env = {"SITECTL_OCPP__ADOPTION": "true", "SITECTL_OCPP__SECURITY_PROFILE": "1"}
    settings = load_settings(write(BASE), env)
    assert settings.ocpp is not None
    assert settings.ocpp.adoption is True


def test_environment_bad_value_is_located_at_the_variable(write: Write) -> None:
    problem = only_problem(write(BASE), {"SITECTL_POLICY__SAFETY_MARGIN_A": "lots"})
    assert problem.source == "environment SITECTL_POLICY__SAFETY_MARGIN_A"
    assert problem.path == "policy.safety_margin_a"


def test_environment_unknown_key_is_named(write: Write) -> None:
    problem = only_problem(write(BASE), {"SITECTL_POLICY__SAFETY_MARGN_A": "3"})
    assert str(problem) == "environment SITECTL_POLICY__SAFETY_MARGN_A: policy.safety_margn_a: unknown key"


def test_environment_unknown_section_is_an_error(write: Write) -> None:
    problem = only_problem(write(BASE), {"SITECTL_MQQT__URL": "mqtt://x"})
    assert problem.source == "environment SITECTL_MQQT__URL"
    assert "unknown section 'mqqt'" in problem.message


def test_environment_cannot_override_list_sections(write: Write) -> None:
    problem = only_problem(write(BASE), {"SITECTL_CHARGERS__0__MAX_A": "16"})
    assert problem.source == "environment SITECTL_CHARGERS__0__MAX_A"
    assert "cannot be overridden" in problem.message


def test_other_sitectl_variables_are_not_configuration(write: Write) -> None:
    load_settings(write(BASE), {"SITECTL_TESTS_STRICT": "1", "PATH": "/usr/bin"})


def test_environment_only_without_a_file() -> None:
    env = {
        "SITECTL_SITE__ID": "envsite",
        "SITECTL_GRID__TYPE": "TN",
        "SITECTL_FUSES": "[]",
    }
    problems = problems_of(None, env)
    assert [(p.source, p.path) for p in problems] == [
        ("environment SITECTL_FUSES", "fuses"),
        (None, "fuses"),  # the list sections exist only in a file
    ]
    assert problems[1].message == "required key missing"


def test_direct_construction_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITECTL_GRID__TYPE", "TN")
    settings = SiteSettings(
        site=SiteSection(id="s"), grid=GridSection(type="IT"), fuses=(FuseSection(id="main", limit_a=63),)
    )
    assert settings.grid.type == "IT"


def test_direct_construction_runs_the_cross_checks() -> None:
    with pytest.raises(ValidationError, match="no root fuse"):
        SiteSettings(
            site=SiteSection(id="s"),
            grid=GridSection(type="IT"),
            fuses=(FuseSection(id="a", parent="b", limit_a=63), FuseSection(id="b", parent="a", limit_a=63)),
        )


# ----------------------------------------------------------------------------------- section fields


@pytest.mark.parametrize("site_id", ["a/b", "a+b", "#", "$SYS", "", "a b"])
def test_site_id_must_be_one_topic_level(write: Write, site_id: str) -> None:
    problem = only_problem(write(BASE.replace('id = "test-site"', f'id = "{site_id}"')))
    assert problem.path == "site.id"


def test_unknown_time_zone(write: Write) -> None:
    problem = only_problem(write(BASE.replace('id = "test-site"', 'id = "s"\ntimezone = "Europe/Olso"')))
    assert problem.path == "site.timezone"
    assert "unknown time zone 'Europe/Olso'" in problem.message


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("0.0.0.0:9000", "0.0.0.0", 9000), ("[::]:8887", "::", 8887), ("box:1", "box", 1)],
)
def test_ocpp_listen(write: Write, listen: str, host: str, port: int) -> None:
    settings = load_settings(write(BASE.replace("security_profile = 1", f'listen = "{listen}"')), {})
    assert settings.ocpp is not None
    assert (settings.ocpp.host, settings.ocpp.port) == (host, port)


@pytest.mark.parametrize("listen", ["9000", "host:", "host:70000", ":::9000", "a b:1"])
def test_ocpp_listen_rejects(write: Write, listen: str) -> None:
    assert (
        only_problem(write(BASE.replace("security_profile = 1", f'listen = "{listen}"'))).path
        == "ocpp.listen"
    )


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtts://host:99999", "broker:1883"])
def test_mqtt_url_rejects(write: Write, url: str) -> None:
    assert only_problem(write(BASE + f'\n[mqtt]\nurl = "{url}"\n')).path == "mqtt.url"


@pytest.mark.parametrize("prefix", ["/garage", "garage/", "garage/+/x", "a#", "a//b"])
def test_mqtt_prefix_rejects(write: Write, prefix: str) -> None:
    assert (
        only_problem(write(BASE + f'\n[mqtt]\nurl = "mqtt://b"\nprefix = "{prefix}"\n')).path == "mqtt.prefix"
    )


def test_charger_min_a_defaults_to_policy_min_current(write: Write) -> None:
    text = charger_text(safe_current_a=0)
    settings = load_settings(write(text + "\n[policy]\nmin_current_a = 8\n"), {})
    assert settings.chargers[0].min_a == 8
    settings = load_settings(write(text), {"SITECTL_POLICY__MIN_CURRENT_A": "7"})
    assert settings.chargers[0].min_a == 7


def test_charger_identity_defaults_to_id(write: Write) -> None:
    charger = load_settings(write(BASE), {}).chargers[0]
    assert (charger.identity, charger.connector) == ("CP-01", 1)


def test_quirk_values_are_scalars(write: Write) -> None:
    text = BASE.replace('lines = ["L1", "L2"]', 'lines = ["L1", "L2"]\nquirks = { a = true, b = [1] }')
    problem = only_problem(write(text))
    assert (problem.path, problem.message) == (
        "chargers[0].quirks.b",
        "a quirk value is true/false, a number or a string",
    )


def test_min_current_below_iec_minimum(write: Write) -> None:
    problem = only_problem(write(BASE.replace("max_a = 32", "max_a = 32\nmin_a = 5")))
    assert problem.path == "chargers[0].min_a"


# -------------------------------------------------------------------------------------- cross-checks

FUSE_CASES = {
    "duplicate id": (
        '[[fuses]]\nid = "c01"\nparent = "main"\nlimit_a = 16\n',
        "fuses[2].id",
        "duplicate fuse id 'c01' (also fuses[1])",
    ),
    "second root": ('[[fuses]]\nid = "other"\nlimit_a = 16\n', "fuses[2].parent", "exactly one fuse"),
    "missing parent": (
        '[[fuses]]\nid = "c02"\nparent = "board-9"\nlimit_a = 16\n',
        "fuses[2].parent",
        "parent 'board-9' of fuse 'c02' is not a fuse",
    ),
    "self parent": (
        '[[fuses]]\nid = "c02"\nparent = "c02"\nlimit_a = 16\n',
        "fuses[2].parent",
        "its own parent",
    ),
    "cycle": (
        '[[fuses]]\nid = "x"\nparent = "y"\nlimit_a = 16\n[[fuses]]\nid = "y"\nparent = "x"\nlimit_a = 16\n',
        "fuses[2].parent",
        "fuse parents form a cycle: x → y → x",
    ),
}


@pytest.mark.parametrize("case", FUSE_CASES)
def test_fuse_tree(write: Write, case: str) -> None:
    extra, path, message = FUSE_CASES[case]
    text = BASE.replace("[ocpp]", extra + "\n[ocpp]")
    problem = only_problem(write(text))
    assert problem.path == path
    assert message in problem.message


def test_no_root(write: Write) -> None:
    text = BASE.replace('id = "main"\nlimit_a = 63', 'id = "main"\nparent = "c01"\nlimit_a = 63')
    messages = [p.message for p in problems_of(write(text))]
    assert any("no root fuse" in m for m in messages)
    assert any("cycle: main → c01 → main" in m for m in messages)


def charger_text(**fields: object) -> str:
    """BASE with the charger's fields replaced/added (None removes one)."""
    values: dict[str, object] = {
        "id": "CP-01",
        "protocol": "ocpp",
        "fuse": "c01",
        "lines": ["L1", "L2"],
        "max_a": 32,
        "safe_current_a": 6,
        "password_hash": "$scrypt$x",
    }
    values.update(fields)
    body = "".join(f"{k} = {_toml(v)}\n" for k, v in values.items() if v is not None)
    return BASE[: BASE.index("[[chargers]]")] + "[[chargers]]\n" + body


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


CHARGER_CASES: dict[str, tuple[dict[str, object], str, str, str]] = {
    "unknown fuse": ({"fuse": "c99"}, "IT", "chargers[0].fuse", "hangs on fuse 'c99', which is not a fuse"),
    "line twice": ({"lines": ["L1", "L1"]}, "IT", "chargers[0].lines", "name a line twice"),
    "IT one line": ({"lines": ["L1"]}, "IT", "chargers[0].lines", "IT grid is wired to 2 lines"),
    "TN two lines": ({"lines": ["L1", "L2"]}, "TN", "chargers[0].lines", "TN grid is wired to 1 line"),
    "bad line name": ({"lines": ["L1", "L4"]}, "IT", "chargers[0].lines[1]", "'L1', 'L2' or 'L3'"),
    "phases mismatch": ({"phases": 3}, "IT", "chargers[0].phases", "make a 1-phase charger"),
    "min above max": (
        {"min_a": 20, "max_a": 16},
        "IT",
        "chargers[0].min_a",
        "min_a 20 A is above max_a 16 A",
    ),
    "safe between": ({"safe_current_a": 3}, "IT", "chargers[0].safe_current_a", "must be 0"),
    "safe above max": ({"safe_current_a": 40}, "IT", "chargers[0].safe_current_a", "must be 0"),
    "max above fuse": ({"max_a": 40}, "IT", "chargers[0].max_a", "exceeds the 32 A rating of fuse 'c01'"),
    "no password": ({"password_hash": None}, "IT", "chargers[0].password_hash", "set password_hash"),
    "modbus no table": (
        {"protocol": "modbus", "password_hash": None},
        "IT",
        "chargers[0].modbus",
        "needs a [chargers.modbus] table",
    ),
    "modbus with password": ({"protocol": "modbus"}, "IT", "chargers[0].password_hash", "only for OCPP"),
}


@pytest.mark.parametrize("case", CHARGER_CASES)
def test_charger_checks(write: Write, case: str) -> None:
    fields, grid, path, message = CHARGER_CASES[case]
    text = charger_text(**fields).replace('type = "IT"', f'type = "{grid}"')
    problems = [p for p in problems_of(write(text)) if p.path == path]
    assert problems, f"no problem at {path}"
    assert message in problems[0].message
    assert problems[0].source is not None
    assert re.search(r":\d+$", problems[0].source)


@pytest.mark.parametrize(
    ("grid", "lines", "phases"),
    [
        ("IT", ["L2", "L3"], 1),
        ("IT", ["L3", "L1", "L2"], 3),
        ("TN", ["L2"], 1),
        ("TN", ["L1", "L2", "L3"], 3),
    ],
)
def test_valid_line_maps(write: Write, grid: str, lines: list[str], phases: int) -> None:
    settings = load_settings(write(charger_text(lines=lines).replace('type = "IT"', f'type = "{grid}"')), {})
    assert settings.charger_phases(settings.chargers[0]) == phases


@pytest.mark.parametrize("safe_a", [0, 6, 19.5, 32])
def test_valid_safe_currents(write: Write, safe_a: float) -> None:
    assert load_settings(write(charger_text(safe_current_a=safe_a)), {}).chargers[0].safe_current_a == safe_a


def test_duplicate_charger_ids_and_endpoints(write: Write) -> None:
    text = charger_text() + charger_text()[charger_text().index("[[chargers]]") :]
    paths = {p.path: p.message for p in problems_of(write(text))}
    assert "duplicate charger id 'CP-01' (also chargers[0])" in paths["chargers[1].id"]
    assert "connector 1 is also chargers[0]" in paths["chargers[1].connector"]


def test_two_connectors_of_one_charger(write: Write) -> None:
    first = charger_text(id="A", ocpp_identity="TWIN", connector=1)
    second = charger_text(id="B", ocpp_identity="TWIN", connector=2)
    settings = load_settings(write(first + second[second.index("[[chargers]]") :]), {})
    assert [(c.identity, c.connector) for c in settings.chargers] == [("TWIN", 1), ("TWIN", 2)]


def test_meter_fuse_must_exist(write: Write) -> None:
    problem = only_problem(write(BASE + '\n[meter]\nfuse = "mian"\nport = "/dev/ttyUSB0"\n'))
    assert (problem.path, problem.message) == ("meter.fuse", "meter fuse 'mian' is not a fuse")


def test_ocpp_charger_needs_ocpp_section(write: Write) -> None:
    problem = only_problem(write(BASE.replace("[ocpp]\nsecurity_profile = 1\n", "")))
    assert problem.path == "chargers[0].protocol"
    assert "no [ocpp] section" in problem.message


@pytest.mark.parametrize(
    ("profile", "missing"), [(2, {"cert_file", "key_file"}), (3, {"cert_file", "key_file", "ca_file"})]
)
def test_tls_profiles_need_files(write: Write, profile: int, missing: set[str]) -> None:
    problems = problems_of(write(BASE.replace("security_profile = 1", f"security_profile = {profile}")))
    assert {p.path for p in problems} == {f"ocpp.{m}" for m in missing}


def test_profile_3_needs_no_password(write: Write) -> None:
    text = charger_text(password_hash=None).replace(
        "security_profile = 1", 'security_profile = 3\ncert_file = "c"\nkey_file = "k"\nca_file = "ca"'
    )
    assert load_settings(write(text), {}).ocpp is not None


def test_profile_2_needs_passwords(write: Write) -> None:
    text = charger_text(password_hash=None).replace(
        "security_profile = 1", 'security_profile = 2\ncert_file = "c"\nkey_file = "k"'
    )
    assert only_problem(write(text)).path == "chargers[0].password_hash"


def test_mqtt_client_certificate_needs_key(write: Write) -> None:
    problem = only_problem(write(BASE + '\n[mqtt]\nurl = "mqtts://b"\ncert_file = "c.pem"\n'))
    assert problem.path == "mqtt.key_file"


def test_mqtt_tls_files_need_mqtts(write: Write) -> None:
    problem = only_problem(write(BASE + '\n[mqtt]\nurl = "mqtt://b"\nca_file = "ca.pem"\n'))
    assert (problem.path, problem.message) == (
        "mqtt.ca_file",
        "ca_file is set but the url is not mqtts:// (no TLS)",
    )


def test_cross_check_problems_are_all_reported(write: Write) -> None:
    text = charger_text(fuse="nowhere", lines=["L1"], max_a=40, safe_current_a=3)
    text += '\n[meter]\nfuse = "x"\nport = "p"\n'
    paths = {p.path for p in problems_of(write(text))}
    assert paths == {"chargers[0].fuse", "chargers[0].lines", "chargers[0].safe_current_a", "meter.fuse"}


# ------------------------------------------------------------------------------- fail-safe budget hook


def test_failsafe_budget_hook_reports_located_problems(write: Write) -> None:
    seen: list[SiteSettings] = []

    def budget(settings: SiteSettings) -> list[ConfigProblem]:
        seen.append(settings)
        return [ConfigProblem(("fuses", 1), "safe currents 40 A exceed fuse 'c01' (32 A) on L1")]

    path = write(BASE)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {}, failsafe_budget_check=budget)
    (problem,) = caught.value.problems
    assert len(seen) == 1
    assert seen[0].site.id == "test-site"
    header_line = line_of(BASE, 'id = "c01"') - 1
    assert (
        str(problem) == f"{path}:{header_line}: fuses[1]: safe currents 40 A exceed fuse 'c01' (32 A) on L1"
    )


def test_failsafe_budget_hook_runs_only_on_an_otherwise_valid_site(write: Write) -> None:
    def budget(settings: SiteSettings) -> list[ConfigProblem]:
        raise AssertionError("must not run")

    with pytest.raises(ConfigError):
        load_settings(write(BASE.replace('type = "IT"', 'type = "XY"')), {}, failsafe_budget_check=budget)


def test_failsafe_budget_hook_passing(write: Write) -> None:
    assert load_settings(write(BASE), {}, failsafe_budget_check=lambda s: []).site.id == "test-site"


def test_sections_are_frozen(write: Write) -> None:
    settings = load_settings(write(BASE), {})
    with pytest.raises(ValidationError):
        settings.chargers[0].max_a = 80  # type: ignore[misc]
    assert isinstance(settings.chargers[0], ChargerSection)


def test_environment_whole_section_as_json(write: Write) -> None:
    settings = load_settings(write(BASE), {"SITECTL_POLICY": '{"safety_margin_a": 4, "settle_s": 2}'})
    assert (settings.policy.safety_margin_a, settings.policy.settle_s) == (4, 2)


def test_environment_bad_json_section_is_located(write: Write) -> None:
    problem = only_problem(write(BASE), {"SITECTL_POLICY": "{safety_margin_a: 4"})
    assert str(problem) == "environment SITECTL_POLICY: policy: not valid JSON for a whole section"


def test_pattern_errors_say_what_is_allowed(write: Write) -> None:
    problem = only_problem(write(BASE.replace('id = "c01"', 'id = "c 01"')))
    assert problem.path == "fuses[1].id"
    assert (
        problem.message
        == "use 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit (got 'c 01')"
    )
