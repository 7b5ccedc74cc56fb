"""Admission computed in array passes must equal admitting candidates one at a time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.allocation import rotation
from controller.allocation.allocator import _offline_load
from controller.allocation.compiled import BITS, compile_site
from controller.allocation.electrical import base_load, line_model
from tests.unit.allocation.reference import Load, Reference, random_site
from tests.unit.allocation.test_properties import EXAMPLES

TOLERANCE_A = 1e-9


def _one_at_a_time(ref: Reference, order: list[str], lo: dict[str, float]) -> set[str]:
    """Admit each car if its minimum fits next to those admitted before it (reference model)."""
    loads = ref.fuse_loads({})  # offline chargers at their maximum
    admitted: set[str] = set()
    for cid in order:
        charger = ref.chargers[cid]
        trial = {fid: load.copy() for fid, load in loads.items()}
        fits = True
        for fid in ref.path(charger.fuse):
            ref.add(trial[fid], ref.effective_lines(charger), lo[cid])
            lines = ref.line_currents(trial[fid])
            for line in ref.loaded_lines(charger):
                if ref.fixed(fid)[line] + lines[line] > ref.limit(fid) + TOLERANCE_A:
                    fits = False
        if fits:
            admitted.add(cid)
            loads = trial
    return admitted


@pytest.mark.parametrize("vector_rounds", [0, 1, 6])
@settings(max_examples=max(10, EXAMPLES // 2))
@given(
    seed=st.integers(0, 2**32 - 1),
    n_chargers=st.integers(1, 200),
    grid=st.sampled_from(["IT", "TN"]),
)
def test_array_admission_equals_one_at_a_time(
    vector_rounds: int, seed: int, n_chargers: int, grid: str
) -> None:
    snapshot = random_site(seed, n_chargers, max(1, n_chargers // 6), grid, smoothing=True, tight=True)
    ref = Reference(snapshot)
    if not ref.meters_usable():
        return
    site = compile_site(snapshot)
    model = line_model(site)
    base = base_load(site, snapshot.meters)
    rng = np.random.default_rng(seed)
    order = rng.permutation(site.n_chargers)[: int(rng.integers(0, site.n_chargers + 1))]
    order = order[site.online[order]]
    lo = site.min_a * rng.choice([1.0, 1.5, 2.5], size=site.n_chargers)
    fixed, fixed_lines = _offline_load(site, model, base)
    capacity = site.limit_a[:, None] - snapshot.policy.safety_margin_a - fixed_lines + TOLERANCE_A
    got = rotation.admit(
        site,
        order,
        lo,
        model.coefficients[site.active],
        BITS[site.active],
        capacity,
        fixed,
        model.phasor,
        vector_rounds=vector_rounds,
    )
    ids = [site.charger_ids[i] for i in order.tolist()]
    want = _one_at_a_time(ref, ids, dict(zip(site.charger_ids, lo.tolist(), strict=True)))
    assert {site.charger_ids[i] for i in np.flatnonzero(got.admitted)} == want


def test_reference_load_copy_is_independent() -> None:
    a = Load.empty()
    b = a.copy()
    b.tn[0] = 1.0
    assert a.tn[0] == 0.0
