"""The ground truth a garage run leaves behind: compact numpy time series plus per-visit summaries.

Rows are taken every `record_every_steps` physics steps. Currents are float32 (0.01 A resolution
is far below any limit); exact per-car energy lives in the visit summaries (float64).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Connector states as small integers in the time series.
STATE_CODES: dict[str, int] = {
    "Available": 0,
    "Preparing": 1,
    "Charging": 2,
    "SuspendedEV": 3,
    "SuspendedEVSE": 4,
    "Finishing": 5,
    "Unavailable": 6,
}


@dataclass(frozen=True, slots=True)
class TripEvent:
    t_s: float
    fuse_id: str
    line_currents_a: tuple[float, float, float]


@dataclass(slots=True)
class VisitRecord:
    """One car's visit. Times are seconds from the start; energies grid-side Wh."""

    name: str
    id_tag: str
    model: str
    arrival_s: float
    departure_s: float
    charger: str | None = None
    connector: int | None = None
    plug_s: float | None = None
    wanted_wh: float = 0.0
    delivered_wh: float = 0.0
    unmet_wh: float = 0.0
    starts: int = 0
    stops: int = 0
    longest_wait_s: float = 0.0
    departed: bool = False


@dataclass(slots=True)
class Recording:
    scenario: str
    step_s: float
    row_interval_s: float
    fuse_ids: tuple[str, ...]
    fuse_limits_a: F64
    fuse_parents: tuple[int, ...]
    connector_ids: tuple[str, ...]
    connector_fuse_paths: tuple[tuple[int, ...], ...]
    charger_ids: tuple[str, ...]
    capacity_rows: int
    t_s: F64 = field(init=False)
    fuse_a: F32 = field(init=False)
    conn_current_a: F32 = field(init=False)
    conn_pilot_a: F32 = field(init=False)
    conn_wants: npt.NDArray[np.bool_] = field(init=False)
    conn_state: npt.NDArray[np.int8] = field(init=False)
    link_state: npt.NDArray[np.int8] = field(init=False)
    queue_len: npt.NDArray[np.int16] = field(init=False)
    waiting_len: npt.NDArray[np.int16] = field(init=False)
    rows: int = 0
    trips: list[TripEvent] = field(default_factory=list)
    visits: list[VisitRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        n, f, c, k = self.capacity_rows, len(self.fuse_ids), len(self.connector_ids), len(self.charger_ids)
        self.t_s = np.zeros(n)
        self.fuse_a = np.zeros((n, f, 3), dtype=np.float32)
        self.conn_current_a = np.zeros((n, c), dtype=np.float32)
        self.conn_pilot_a = np.zeros((n, c), dtype=np.float32)
        self.conn_wants = np.zeros((n, c), dtype=np.bool_)
        self.conn_state = np.zeros((n, c), dtype=np.int8)
        self.link_state = np.zeros((n, k), dtype=np.int8)
        self.queue_len = np.zeros(n, dtype=np.int16)
        self.waiting_len = np.zeros(n, dtype=np.int16)

    def add_row(
        self,
        t_s: float,
        fuse_a: F64,
        conn_current_a: F64,
        conn_pilot_a: F64,
        conn_wants: npt.NDArray[np.bool_],
        conn_state: npt.NDArray[np.int8],
        link_state: npt.NDArray[np.int8],
        queue_len: int,
        waiting_len: int,
    ) -> None:
        i = self.rows
        if i >= self.capacity_rows:
            raise IndexError("recording is full")
        self.t_s[i] = t_s
        self.fuse_a[i] = fuse_a
        self.conn_current_a[i] = conn_current_a
        self.conn_pilot_a[i] = conn_pilot_a
        self.conn_wants[i] = conn_wants
        self.conn_state[i] = conn_state
        self.link_state[i] = link_state
        self.queue_len[i] = queue_len
        self.waiting_len[i] = waiting_len
        self.rows += 1

    def trimmed(self) -> Recording:
        """A copy holding only the rows written (arrays are views of the first `rows` rows)."""
        out = Recording(
            scenario=self.scenario,
            step_s=self.step_s,
            row_interval_s=self.row_interval_s,
            fuse_ids=self.fuse_ids,
            fuse_limits_a=self.fuse_limits_a,
            fuse_parents=self.fuse_parents,
            connector_ids=self.connector_ids,
            connector_fuse_paths=self.connector_fuse_paths,
            charger_ids=self.charger_ids,
            capacity_rows=0,
            trips=list(self.trips),
            visits=list(self.visits),
        )
        n = self.rows
        out.t_s, out.fuse_a = self.t_s[:n], self.fuse_a[:n]
        out.conn_current_a, out.conn_pilot_a = self.conn_current_a[:n], self.conn_pilot_a[:n]
        out.conn_wants, out.conn_state = self.conn_wants[:n], self.conn_state[:n]
        out.link_state = self.link_state[:n]
        out.queue_len, out.waiting_len = self.queue_len[:n], self.waiting_len[:n]
        out.rows = n
        out.capacity_rows = n
        return out
