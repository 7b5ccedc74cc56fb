"""Small garages built in code for the hardware-in-the-loop requirement tests (TOML scenario text)."""

from __future__ import annotations

from simulator.scenario_file import LoadedScenario, parse_scenario

# Cars with a known response: three-phase 16 A (11 kW) and single-phase 32 A (7.4 kW); both follow a
# new limit within 2-5 s (IEC 61851-1 allows 5 s) and draw what they are offered.
CAR_MODELS = """
[[car_models]]
name = "3ph-16"
weight = 1
battery_kwh = 75
phases = 3
max_current_a = 16
response_delay_s = 3.0

[[car_models]]
name = "3ph-16-slow"
weight = 1
battery_kwh = 77
phases = 3
max_current_a = 16
response_delay_s = 5.0

[[car_models]]
name = "1ph-32"
weight = 1
battery_kwh = 64
phases = 1
max_current_a = 32
response_delay_s = 2.0
"""


def tn_site(
    name: str,
    *,
    main_a: float,
    chargers: list[tuple[str, list[str], float, float]],
    duration_s: float,
    speed: float,
    extra: str = "",
    policy: str = "",
    record_every_steps: int = 4,
) -> LoadedScenario:
    """A TN 400/230 V garage: one main fuse with a Kaifa meter (power every 2 s, currents every
    10 s), a 32 A final circuit per charger. `chargers`: (id, lines, max_a, safe_current_a)."""
    fuses = [f'  {{ id = "main", limit_a = {main_a:g} }},']
    rows = []
    for identity, lines, max_a, safe_a in chargers:
        circuit = f"c-{identity}"
        fuses.append(f'  {{ id = "{circuit}", parent = "main", limit_a = 32 }},')
        quoted = ", ".join(f'"{line}"' for line in lines)
        rows.append(
            f'  {{ id = "{identity}", protocol = "ocpp", fuse = "{circuit}", lines = [{quoted}], '
            f"max_a = {max_a:g}, safe_current_a = {safe_a:g} }},"
        )
    text = f"""
fuses = [
{chr(10).join(fuses)}
]
chargers = [
{chr(10).join(rows)}
]

[scenario]
name = "{name}"
duration_s = {duration_s:g}
seed = 5
speed = {speed:g}
start_utc = 2026-11-22T17:00:00Z
record_every_steps = {record_every_steps}

[site]
id = "{name}"
timezone = "Europe/Oslo"

[grid]
type = "TN"
nominal_voltage_v = 230

[meter]
fuse = "main"
port = "/dev/null"
vendor = "kaifa"

[meter_sim]
vendor = "kaifa"

[policy]
{policy}

[charger_defaults]
version = "1.6"
meter_sample_interval_s = 60

[[charger_sim]]
match = "*[02468]"
version = "2.0.1"
{CAR_MODELS}
{extra}
"""
    return parse_scenario(text, f"<{name}>")


def visit(car: str, charger: str, arrival_s: float, departure_s: float, soc: float = 0.2) -> str:
    return f"""
[[visits]]
car = "{car}"
charger = "{charger}"
arrival_s = {arrival_s:g}
departure_s = {departure_s:g}
soc = {soc:g}
target_soc = 0.9
"""
