"""The §7.2 snapshot as JSON: documented defaults, exact round trip, errors that name the field."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.allocation import SnapshotError, allocate
from controller.allocation.model import Policy, SiteSnapshot
from controller.allocation.snapshot_json import (
    allocation_to_json,
    policy_defaults,
    snapshot_from_json,
    snapshot_to_json,
)
from tests.unit.allocation.reference import random_site

BASE: dict[str, Any] = {
    "version": 1,
    "now": "2026-11-22T17:00:00Z",
    "grid": {"type": "IT", "nominal_voltage_v": 230},
    "policy": {"safety_margin_a": 2.0, "min_current_a": 6.0, "rotation_period_s": 900},
    "fuses": [
        {"id": "main", "parent": None, "limit_a": 125},
        {"id": "board-1", "parent": "main", "limit_a": 80},
        {"id": "c07", "parent": "board-1", "limit_a": 32, "base_load_a": 0},
    ],
    "meters": [{"fuse": "main", "currents_a": {"L1": 88.1, "L2": None, "L3": 70.2}, "age_s": 3.1}],
    "chargers": [
        {
            "id": "cp-07",
            "fuse": "c07",
            "lines": ["L2", "L3"],
            "min_a": 6,
            "max_a": 32,
            "setpoint_a": 16.0,
            "vehicle": {
                "connected": True,
                "wants_energy": True,
                "max_a": 32,
                "active_lines": ["L2", "L3"],
                "drawing_a": {"L2": 15.8, "L3": 15.8},
                "charging_since": "2026-11-22T16:10:00Z",
                "waiting_since": None,
                "session_energy_wh": 5300,
            },
        }
    ],
}


def test_the_design_example_is_a_valid_snapshot() -> None:
    snapshot = snapshot_from_json(BASE)
    assert snapshot.chargers[0].vehicle is not None
    assert snapshot.chargers[0].vehicle.drawing_a == (None, 15.8, 15.8)
    assert snapshot.meters[0].currents_a == (88.1, None, 70.2)
    out = allocation_to_json(allocate(snapshot))
    assert set(out) == {"version", "failsafe", "chargers", "fuses"}
    assert set(out["chargers"]["cp-07"]) == {"current_a", "target_a", "state", "limited_by"}
    assert set(out["fuses"]["main"]["predicted_a"]) == {"L1", "L2", "L3"}


def test_documented_policy_defaults_are_the_allocators_defaults() -> None:
    assert dict(policy_defaults()) == asdict(Policy())


def test_a_minimal_snapshot_takes_the_defaults() -> None:
    snapshot = snapshot_from_json(
        {
            "version": 1,
            "now": "2026-11-22T18:00:00+01:00",
            "grid": {"type": "TN"},
            "fuses": [{"id": "main", "limit_a": 63}],
            "chargers": [{"id": "a", "fuse": "main", "lines": ["L1"], "max_a": 16, "vehicle": {}}],
        }
    )
    assert snapshot.policy == Policy()
    assert snapshot.meters == ()
    charger = snapshot.chargers[0]
    assert (charger.min_a, charger.safe_current_a, charger.online, charger.weight) == (None, None, True, 1.0)
    assert charger.vehicle is not None
    assert charger.vehicle.active_lines is None
    assert snapshot_to_json(snapshot)["now"] == "2026-11-22T17:00:00Z"


def _roundtrip(snapshot: SiteSnapshot) -> SiteSnapshot:
    return snapshot_from_json(json.loads(json.dumps(snapshot_to_json(snapshot))))


@settings(max_examples=50)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(1, 10), st.sampled_from(["IT", "TN"]))
def test_what_the_daemon_prints_reads_back_unchanged(
    seed: int, n_chargers: int, n_fuses: int, grid: str
) -> None:
    snapshot = random_site(seed, n_chargers, n_fuses, grid, smoothing=True, tight=False)
    back = _roundtrip(snapshot)
    assert back == snapshot
    assert allocation_to_json(allocate(back)) == allocation_to_json(allocate(snapshot))


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["chargers", 0, "lines", 1], "L4", "chargers[0].lines[1]: Input should be 'L1', 'L2' or 'L3'"),
        (["chargers", 0, "max_a"], _DELETE, "chargers[0].max_a: Field required"),
        (["chargers", 0, "fuse"], "c99", "chargers[0].fuse: unknown fuse 'c99'"),
        (["chargers", 0, "lines"], ["L2", "L2"], "chargers[0].lines: lines must be distinct"),
        (["chargers", 0, "lines"], ["L2"], "chargers[0].lines: on IT a charger is wired to 2 or 3 lines"),
        (["chargers", 0, "min_a"], 40, "chargers[0].min_a: must be > 0 and <= max_a"),
        (["chargers", 0, "safe_current_a"], 3, "chargers[0].safe_current_a: must be 0 or between"),
        (["chargers", 0, "weight"], 0, "chargers[0].weight: must be a positive number"),
        (["chargers", 0, "vehicle", "active_lines"], ["L1", "L2"], "chargers[0].vehicle.active_lines: "),
        (
            ["chargers", 0, "vehicle", "drawing_a", "L1"],
            3.0,
            "chargers[0].vehicle.drawing_a.L1: is not a wired",
        ),
        (
            ["chargers", 0, "vehicle", "drawing_a", "L4"],
            3.0,
            "chargers[0].vehicle.drawing_a.L4: Extra inputs",
        ),
        (
            ["chargers", 0, "vehicle", "charging_since"],
            "2026-11-22T16:10:00",
            "chargers[0].vehicle.charging_since",
        ),
        (["chargers", 0, "vehicle", "max_a"], -1, "chargers[0].vehicle.max_a: must be >= 0"),
        (["fuses", 0, "base_laod_a"], 3, "fuses[0].base_laod_a: Extra inputs are not permitted"),
        (["fuses", 1, "parent"], "c07", "fuses[1].parent: fuses form a cycle"),
        (["fuses", 2, "limit_a"], 0, "fuses[2].limit_a: must be a positive number"),
        (["fuses", 2, "id"], "main", "fuses[2].id: duplicate fuse id 'main'"),
        (["meters", 0, "currents_a", "L1"], -2.0, "meters[0].currents_a.L1: must be >= 0 or null"),
        (["meters", 0, "fuse"], "nowhere", "meters[0].fuse: unknown fuse 'nowhere'"),
        (["meters", 0, "age_s"], _DELETE, "meters[0].age_s: Field required"),
        (["policy", "taper_ratio"], 0, "policy.taper_ratio: must be in (0, 1]"),
        (["policy", "rotation_period_s"], "soon", "policy.rotation_period_s: Input should be a valid number"),
        (["grid", "type"], "TT", "grid.type: Input should be 'IT' or 'TN'"),
        (["version"], 2, "version: Input should be 1"),
        (["now"], "2026-11-22T17:00:00", "now: Input should have timezone info"),
    ],
)
def test_a_malformed_snapshot_names_the_field(path: list[str | int], value: Any, message: str) -> None:
    with pytest.raises(SnapshotError) as caught:
        snapshot_from_json(_with(path, value))
    assert message in str(caught.value)


def test_duplicate_charger_ids_are_named() -> None:
    obj = copy.deepcopy(BASE)
    obj["chargers"].append(copy.deepcopy(obj["chargers"][0]))
    with pytest.raises(SnapshotError, match=r"chargers\[1\]\.id: duplicate charger id 'cp-07'"):
        snapshot_from_json(obj)


def test_not_an_object_is_malformed() -> None:
    with pytest.raises(SnapshotError):
        snapshot_from_json([1, 2, 3])
