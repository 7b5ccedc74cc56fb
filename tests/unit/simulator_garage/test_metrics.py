"""Metrics against hand-computed series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import metrics
from simulator.recording import Recording, TripEvent, VisitRecord


def recording(fuse_series: list[list[float]], wants: list[bool] | None = None) -> Recording:
    """One fuse 'main' (limit 32 A) with one connector under it; rows 1 s apart."""
    n = len(fuse_series)
    rec = Recording(
        scenario="hand",
        step_s=0.25,
        row_interval_s=1.0,
        fuse_ids=("main",),
        fuse_limits_a=np.array([32.0]),
        fuse_parents=(-1,),
        connector_ids=("A/1",),
        connector_fuse_paths=((0,),),
        charger_ids=("A",),
        capacity_rows=n,
    )
    for i, lines in enumerate(fuse_series):
        rec.add_row(
            float(i + 1),
            np.array([lines]),
            np.array([lines[0]]),
            np.array([lines[0]]),
            np.array([True if wants is None else wants[i]]),
            np.zeros(1, dtype=np.int8),
            np.zeros(1, dtype=np.int8),
            0,
            0,
        )
    return rec


def test_overload_ampere_seconds_of_a_known_excursion() -> None:
    # 10 s at 30 A, then 5 s at 40 A on L1 and 36 A on L2: 8 A x 5 s + 4 A x 5 s.
    rec = recording([[30.0, 30.0, 0.0]] * 10 + [[40.0, 36.0, 0.0]] * 5)
    by_line = {o.line: o for o in metrics.overloads(rec)}
    assert by_line["L1"].overload_as == pytest.approx(40.0)
    assert by_line["L2"].overload_as == pytest.approx(20.0)
    assert by_line["L3"].overload_as == 0.0
    assert by_line["L1"].time_above_s == 5.0
    assert by_line["L1"].peak_ratio == pytest.approx(40 / 32)


def test_spells_above_the_limit_are_counted_with_the_longest() -> None:
    # L1 over for 3 rows, back, over for 1 row at the end; L2 over from the start for 2 rows.
    rec = recording([[40.0, 40.0, 0.0]] * 2 + [[40.0, 0.0, 0.0]] + [[0.0, 0.0, 0.0]] * 4 + [[33.0, 0.0, 0.0]])
    by_line = {o.line: o for o in metrics.overloads(rec)}
    assert (by_line["L1"].episodes, by_line["L1"].longest_above_s) == (2, 3.0)
    assert (by_line["L2"].episodes, by_line["L2"].longest_above_s) == (1, 2.0)
    assert (by_line["L3"].episodes, by_line["L3"].longest_above_s) == (0, 0.0)


def test_exactly_at_the_limit_is_not_an_overload() -> None:
    rec = recording([[32.0, 32.0, 32.0]] * 4)
    assert all(o.overload_as == 0 and o.time_above_s == 0 for o in metrics.overloads(rec))


def test_jain_index() -> None:
    assert metrics.jain_index([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert metrics.jain_index([10.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert metrics.jain_index([1.0, 3.0]) == pytest.approx(16 / 20)
    assert metrics.jain_index([]) is None
    assert metrics.jain_index([0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        metrics.jain_index([-1.0])


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_jain_index_lies_between_one_over_n_and_one(values: list[float]) -> None:
    j = metrics.jain_index(values)
    assert j is not None
    assert 1.0 / len(values) - 1e-9 <= j <= 1.0 + 1e-9


def test_utilization_counts_only_rows_with_demand() -> None:
    rec = recording([[16.0, 8.0, 0.0], [32.0, 0.0, 0.0], [0.0, 0.0, 0.0]], wants=[True, True, False])
    assert metrics.utilization(rec)["main"] == pytest.approx((0.5 + 1.0) / 2)


def test_report_and_plot(tmp_path: Path) -> None:
    rec = recording([[30.0, 30.0, 0.0]] * 10 + [[40.0, 0.0, 0.0]] * 5)
    rec.trips.append(TripEvent(14.0, "main", (40.0, 0.0, 0.0)))
    rec.visits += [
        VisitRecord("a", "T1", "m", 0.0, 10.0, "A", 1, 0.0, 10_000, 4000, 6000, 2, 1, 30.0, True),
        VisitRecord("b", "T2", "m", 1.0, 11.0, "A", 1, 5.0, 10_000, 4000, 6000, 1, 0, 5.0, True),
        VisitRecord("c", "T3", "m", 2.0, 12.0, None, None, None, 5_000, 0.0, 5_000, 0, 0, 0.0, True),
    ]
    data = metrics.write_report(rec, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(data))
    assert data["overload"]["total_as"] == pytest.approx(40.0)
    assert data["trips"] == [{"t_s": 14.0, "fuse": "main", "line_currents_a": [40.0, 0.0, 0.0]}]
    assert data["fairness"]["cars_with_unmet_demand"] == 2
    assert data["fairness"]["jain_energy"] == pytest.approx(1.0)
    assert data["waits"]["longest_plugged_not_charging_s"] == 30.0
    assert data["waits"]["longest_for_a_charger_s"] == 10.0
    assert data["starts_stops"]["max_starts"] == 2
    assert data["energy"]["unmet_at_departure_wh"] == pytest.approx(17_000)
    assert data["energy"]["cars_never_plugged"] == 1
    metrics.plot(rec, tmp_path / "p.png")
    png = (tmp_path / "p.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
