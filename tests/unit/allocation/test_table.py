"""Table tests: each tests/data/allocation/*.json holds a snapshot and the allocation worked out by
hand (the derivation is in its `description`), compared through the JSON edge `sitectl balance` uses;
where it has `paced`, also what the pacer commands first (every gate open, setpoints as in the
snapshot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.allocation import allocate
from controller.allocation.snapshot_json import allocation_to_json, snapshot_from_json
from controller.pacing import DispatchState, Pacer
from tests.support import REPO_ROOT

CASES = sorted((REPO_ROOT / "tests" / "data" / "allocation").glob("*.json"))
TOLERANCE_A = 0.011


def test_there_are_table_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_allocation_matches_the_hand_worked_case(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    expected = case["expected"]
    snapshot = snapshot_from_json(case["snapshot"])
    allocation = allocate(snapshot)
    got = allocation_to_json(allocation)

    if "failsafe" in expected:
        assert got["failsafe"] == expected["failsafe"]
    if "failsafe_contains" in expected:
        assert expected["failsafe_contains"] in (got["failsafe"] or "")
    assert set(got["chargers"]) >= set(expected["chargers"])
    for cid, want in expected["chargers"].items():
        have = got["chargers"][cid]
        assert have["state"] == want["state"], cid
        assert have["limited_by"] == want["limited_by"], cid
        assert have["current_a"] == pytest.approx(want["current_a"], abs=TOLERANCE_A), cid
        if "target_a" in want:
            assert have["target_a"] == pytest.approx(want["target_a"], abs=TOLERANCE_A), cid
    for fid, lines in expected.get("fuses", {}).items():
        predicted = got["fuses"][fid]["predicted_a"]
        for line, value in lines.items():
            assert predicted[line] == pytest.approx(value, abs=TOLERANCE_A), f"{fid} {line}"

    paced_expected = case.get("paced")
    if paced_expected is None:
        return
    paced = Pacer().pace(
        snapshot,
        allocation,
        {c.id: c.setpoint_a for c in snapshot.chargers},
        now_mono=1e6,
        dispatch=DispatchState(),
    )
    for cid, want in paced_expected.items():
        assert paced[cid].current_a == pytest.approx(want["current_a"], abs=TOLERANCE_A), cid
        assert paced[cid].reason == want["paced_by"], cid
