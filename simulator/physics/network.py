"""The fuse tree and the loads under it: one vectorised step gives every fuse's line currents.

Loads are rows of a complex coefficient matrix C (loads x 3 lines, see phasors.py); the tree is a 0/1
membership matrix M (fuses x loads, 1 where the load hangs anywhere below the fuse). One step is
`M @ (C * I)`: per-fuse line phasors, whatever the depth of the tree. An open fuse cuts every load
below it from the next step on (`open` marks the devices that tripped themselves; a load is dead
when any device on its path to the root is open).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.physics.phasors import (
    STAR_UNIT,
    ComplexArray,
    FloatArray,
    Grid,
    line_to_line_voltage_v,
    star_voltage_v,
)
from simulator.physics.protection import DeviceKind, TripAccumulator, trip_curve

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class FuseSpec:
    """One protective device. `limit_a` is the rating the controller must respect on each line;
    `rated_a` is the device's own In for its trip curve (defaults to the limit)."""

    id: str
    limit_a: float
    parent: str | None = None
    device: DeviceKind = "gG"
    rated_a: float | None = None

    @property
    def device_rated_a(self) -> float:
        return self.limit_a if self.rated_a is None else self.rated_a


class FuseTree:
    """Validated tree (or forest) of fuses, indexed in a parent-before-child order."""

    def __init__(self, fuses: Sequence[FuseSpec]) -> None:
        by_id: dict[str, FuseSpec] = {}
        for fuse in fuses:
            if fuse.id in by_id:
                raise ValueError(f"fuse {fuse.id!r} defined twice")
            if not fuse.limit_a > 0:
                raise ValueError(f"fuse {fuse.id!r}: limit_a must be positive")
            by_id[fuse.id] = fuse
        for fuse in fuses:
            if fuse.parent is not None and fuse.parent not in by_id:
                raise ValueError(f"fuse {fuse.id!r}: parent {fuse.parent!r} is not a fuse")
        order: list[str] = []
        placed: set[str] = set()
        while len(order) < len(by_id):
            progressed = False
            for fuse in fuses:
                if fuse.id not in placed and (fuse.parent is None or fuse.parent in placed):
                    order.append(fuse.id)
                    placed.add(fuse.id)
                    progressed = True
            if not progressed:
                raise ValueError(f"fuse tree has a cycle among {sorted(set(by_id) - placed)}")
        self.specs: tuple[FuseSpec, ...] = tuple(by_id[i] for i in order)
        self.ids: tuple[str, ...] = tuple(order)
        self.index: dict[str, int] = {fid: i for i, fid in enumerate(order)}
        self.parent: tuple[int, ...] = tuple(
            -1 if s.parent is None else self.index[s.parent] for s in self.specs
        )
        self.limits_a: FloatArray = np.array([s.limit_a for s in self.specs], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    def path_to_root(self, fuse_id: str) -> list[int]:
        """The fuse and all its ancestors, nearest first."""
        i = self.index[fuse_id]
        path = []
        while i >= 0:
            path.append(i)
            i = self.parent[i]
        return path

    def subtree(self, fuse_id: str) -> list[int]:
        root = self.index[fuse_id]
        return [i for i, fid in enumerate(self.ids) if root in self.path_to_root(fid)]


@dataclass(frozen=True, slots=True)
class NodeTruth:
    """Ground truth at one fuse node: what an ideal meter there would read. Voltages are line-to-line
    on IT (as IT meters report them) and line-to-neutral on TN; energies since the start."""

    fuse_id: str
    current_a: tuple[float, float, float]
    voltage_v: tuple[float, float, float]
    active_power_import_w: float
    active_power_export_w: float
    reactive_power_import_var: float
    reactive_power_export_var: float
    energy_import_wh: float
    energy_export_wh: float
    reactive_energy_import_varh: float
    reactive_energy_export_varh: float


class GridModel:
    """Fuses, loads and the state that evolves: open fuses, trip damage, energy registers."""

    def __init__(self, grid: Grid, nominal_voltage_v: float, fuses: Sequence[FuseSpec]) -> None:
        if grid not in ("IT", "TN"):
            raise ValueError(f"grid must be IT or TN, got {grid!r}")
        if nominal_voltage_v <= 0:
            raise ValueError("nominal voltage must be positive")
        self.grid: Grid = grid
        self.nominal_voltage_v = nominal_voltage_v
        self.star_v = star_voltage_v(grid, nominal_voltage_v)
        self.tree = FuseTree(fuses)
        self._load_fuse: list[int] = []
        self._load_coeffs: list[ComplexArray] = []
        self.load_names: list[str] = []
        self._coeffs: ComplexArray = np.zeros((0, 3), dtype=np.complex128)
        self._member: FloatArray = np.zeros((len(self.tree), 0))
        # The same matrix as complex numbers: numpy would otherwise convert it on every step, which
        # costs more than the product itself in a garage of a few hundred loads.
        self._member_c: ComplexArray = np.zeros((len(self.tree), 0), dtype=np.complex128)
        self._dirty = False
        self.trips = TripAccumulator([trip_curve(s.device, s.device_rated_a) for s in self.tree.specs])
        n = len(self.tree)
        self.open: BoolArray = np.zeros(n, dtype=np.bool_)
        self.load_alive: BoolArray = np.zeros(0, dtype=np.bool_)
        self.line_currents_a: FloatArray = np.zeros((n, 3))
        self.power_va: npt.NDArray[np.complex128] = np.zeros(n, dtype=np.complex128)
        # Registers in watt-seconds / var-seconds: import, export, reactive import, reactive export.
        self.energy_ws: FloatArray = np.zeros((n, 4))

    # ------------------------------------------------------------------ building
    def add_load(self, fuse_id: str, coefficients: ComplexArray, name: str) -> int:
        if fuse_id not in self.tree.index:
            raise ValueError(f"load {name!r}: unknown fuse {fuse_id!r}")
        self._load_fuse.append(self.tree.index[fuse_id])
        self._load_coeffs.append(np.asarray(coefficients, dtype=np.complex128))
        self.load_names.append(name)
        self._dirty = True
        return len(self._load_fuse) - 1

    @property
    def load_count(self) -> int:
        return len(self._load_fuse)

    def _build(self) -> None:
        n_loads = len(self._load_fuse)
        self._coeffs = (
            np.array(self._load_coeffs, dtype=np.complex128)
            if n_loads
            else np.zeros((0, 3), dtype=np.complex128)
        )
        member = np.zeros((len(self.tree), n_loads))
        for j, fuse in enumerate(self._load_fuse):
            i = fuse
            while i >= 0:
                member[i, j] = 1.0
                i = self.tree.parent[i]
        self._member = member
        self._member_c = member.astype(np.complex128)
        self.load_alive = ~((self.open.astype(np.float64) @ member) > 0)
        self._dirty = False

    # ------------------------------------------------------------------ stepping
    def solve(self, currents_a: FloatArray) -> tuple[ComplexArray, FloatArray]:
        """Per-fuse line phasors and magnitudes for these load currents (no state change)."""
        if self._dirty:
            self._build()
        flowing = np.where(self.load_alive, currents_a, 0.0)
        phasors: ComplexArray = self._member_c @ (self._coeffs * flowing[:, None])
        return phasors, np.abs(phasors)

    def step(self, currents_a: FloatArray, dt_s: float) -> list[str]:
        """Advance by dt with these load currents; returns the ids of fuses that opened."""
        phasors, mags = self.solve(currents_a)
        self.line_currents_a = mags
        s = (self.star_v * STAR_UNIT[None, :] * np.conj(phasors)).sum(axis=1)
        self.power_va = s
        p, q = s.real, s.imag
        self.energy_ws[:, 0] += np.maximum(p, 0.0) * dt_s
        self.energy_ws[:, 1] += np.maximum(-p, 0.0) * dt_s
        self.energy_ws[:, 2] += np.maximum(q, 0.0) * dt_s
        self.energy_ws[:, 3] += np.maximum(-q, 0.0) * dt_s
        tripped = self.trips.step(mags, dt_s) & ~self.open
        if not tripped.any():
            return []
        opened = [self.tree.ids[i] for i in np.flatnonzero(tripped)]
        self.open |= tripped
        self.load_alive = ~((self.open.astype(np.float64) @ self._member) > 0)
        return opened

    def reclose(self, fuse_id: str) -> None:
        """Replace a blown fuse-link / re-close a breaker; it starts cold."""
        i = self.tree.index[fuse_id]
        self.open[i] = False
        self.trips.reset(i)
        if self._dirty:
            self._build()
        self.load_alive = ~((self.open.astype(np.float64) @ self._member) > 0)

    def is_dead(self, fuse_id: str) -> bool:
        """True when this fuse or one above it is open."""
        return any(self.open[i] for i in self.tree.path_to_root(fuse_id))

    def node_truth(self, fuse_id: str) -> NodeTruth:
        i = self.tree.index[fuse_id]
        cur = self.line_currents_a[i]
        s = self.power_va[i]
        e = self.energy_ws[i] / 3600.0
        v = line_to_line_voltage_v(self.grid, self.nominal_voltage_v) if self.grid == "IT" else self.star_v
        on = 0.0 if self.is_dead(fuse_id) else v
        return NodeTruth(
            fuse_id=fuse_id,
            current_a=(float(cur[0]), float(cur[1]), float(cur[2])),
            voltage_v=(on, on, on),
            active_power_import_w=max(s.real, 0.0),
            active_power_export_w=max(-s.real, 0.0),
            reactive_power_import_var=max(s.imag, 0.0),
            reactive_power_export_var=max(-s.imag, 0.0),
            energy_import_wh=float(e[0]),
            energy_export_wh=float(e[1]),
            reactive_energy_import_varh=float(e[2]),
            reactive_energy_export_varh=float(e[3]),
        )
