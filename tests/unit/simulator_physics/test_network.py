"""The fuse tree: each node carries everything below it; a trip cuts the subtree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.physics import FuseSpec, GridModel, branch_load, car_load, line_load


def it_site() -> GridModel:
    model = GridModel(
        "IT",
        230.0,
        [
            FuseSpec("main", 125),
            FuseSpec("board", 63, parent="main"),
            FuseSpec("c1", 32, parent="board", device="C"),
            FuseSpec("c2", 32, parent="board", device="C"),
            FuseSpec("c3", 32, parent="main", device="B"),
        ],
    )
    model.add_load("c1", car_load("IT", ["L1", "L2"], 1), "car1")
    model.add_load("c2", car_load("IT", ["L2", "L3"], 1), "car2")
    model.add_load("c3", car_load("IT", ["L1", "L2", "L3"], 3), "car3")
    model.add_load("main", branch_load("L3", "L1"), "base")
    return model


def test_each_node_carries_everything_below_it() -> None:
    model = it_site()
    model.step(np.array([16.0, 16.0, 10.0, 0.0]), 1.0)
    cur = dict(zip(model.tree.ids, model.line_currents_a, strict=True))
    assert list(cur["c1"]) == pytest.approx([16, 16, 0])
    assert list(cur["c2"]) == pytest.approx([0, 16, 16])
    assert list(cur["board"]) == pytest.approx([16, 16 * math.sqrt(3), 16])
    assert list(cur["c3"]) == pytest.approx([10, 10, 10])
    # main = board + a balanced 10 A, by hand: on L2 the board's 16 sqrt(3) A lies at -120 degrees, in
    # phase with L2's star voltage, so magnitudes add; on L1 the branch current (at +30 degrees)
    # meets the 3-phase car's current at 0 degrees: sqrt(16^2 + 10^2 + 2*16*10*cos 30).
    assert cur["main"][1] == pytest.approx(16 * math.sqrt(3) + 10)
    l1 = math.sqrt(256 + 100 + 320 * math.cos(math.radians(30)))
    assert list(cur["main"]) == pytest.approx([l1, 16 * math.sqrt(3) + 10, l1])


def test_energy_registers_integrate_power() -> None:
    model = GridModel("TN", 230.0, [FuseSpec("main", 63)])
    model.add_load("main", line_load("L1"), "heater")
    model.add_load("main", line_load("L2", power_factor=0.8), "motor")
    for _ in range(3600):
        model.step(np.array([10.0, 10.0]), 1.0)
    truth = model.node_truth("main")
    assert truth.energy_import_wh == pytest.approx(2300.0 + 1840.0)
    assert truth.reactive_energy_import_varh == pytest.approx(230.0 * 10.0 * 0.6)
    assert truth.active_power_import_w == pytest.approx(4140.0)
    assert truth.energy_export_wh == 0.0
    assert truth.voltage_v == (230.0, 230.0, 230.0)


def test_it_node_truth_reports_line_to_line_voltage() -> None:
    model = it_site()
    model.step(np.zeros(4), 1.0)
    assert model.node_truth("main").voltage_v == (230.0, 230.0, 230.0)


def test_trip_cuts_the_load_below_and_only_below() -> None:
    model = it_site()
    # 4 x In on a C32 is below its magnetic release; 6 x In is above.
    opened = model.step(np.array([6 * 32.0, 16.0, 10.0, 5.0]), 0.1)
    assert opened == ["c1"]
    assert model.is_dead("c1")
    assert not model.is_dead("board")
    model.step(np.array([6 * 32.0, 16.0, 10.0, 5.0]), 0.1)
    cur = dict(zip(model.tree.ids, model.line_currents_a, strict=True))
    assert list(cur["c1"]) == [0.0, 0.0, 0.0]
    assert list(cur["c2"]) == pytest.approx([0, 16, 16])
    assert model.node_truth("c1").voltage_v == (0.0, 0.0, 0.0)
    model.reclose("c1")
    model.step(np.array([16.0, 16.0, 10.0, 5.0]), 0.1)
    assert model.line_currents_a[model.tree.index["c1"]][0] == pytest.approx(16.0)


def test_upstream_trip_kills_the_subtree() -> None:
    model = GridModel(
        "TN", 230.0, [FuseSpec("main", 25, device="B"), FuseSpec("c1", 32, parent="main", device="none")]
    )
    model.add_load("c1", line_load("L1"), "x")
    assert model.step(np.array([100.0]), 0.1) == ["main"]
    assert model.is_dead("c1")
    model.step(np.array([100.0]), 0.1)
    assert model.line_currents_a.sum() == 0.0


@pytest.mark.parametrize(
    "fuses",
    [
        [FuseSpec("a", 10), FuseSpec("a", 10)],
        [FuseSpec("a", 10, parent="zz")],
        [FuseSpec("a", 10, parent="b"), FuseSpec("b", 10, parent="a")],
        [FuseSpec("a", 0)],
    ],
)
def test_broken_trees_are_refused(fuses: list[FuseSpec]) -> None:
    with pytest.raises(ValueError):
        GridModel("IT", 230.0, fuses)


def test_deep_tree() -> None:
    specs = [FuseSpec("f0", 400, device="none")] + [
        FuseSpec(f"f{i}", 400 - i, parent=f"f{i - 1}", device="none") for i in range(1, 8)
    ]
    model = GridModel("TN", 230.0, specs)
    model.add_load("f7", line_load("L3"), "deep")
    model.step(np.array([7.0]), 1.0)
    assert np.allclose(model.line_currents_a[:, 2], 7.0)
