"""Output of `sitectl sessions [--since DATE] [--csv]`: parsing the date, CSV and JSON formatting."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from .model import Session, iso_utc, session_to_json
from .periods import DEFAULT_ZONE

CSV_COLUMNS = (
    "session_id",
    "charger_id",
    "transaction_id",
    "id_tag",
    "started_utc",
    "stopped_utc",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "stop_reason",
    "version",
    "energy_status",
    "flags",
)


def parse_since(text: str, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """`--since` value: a date is local midnight at the site; a time without an offset is local too."""
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone).astimezone(UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since: not a date or time: {text!r} (use e.g. 2026-11-01)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def format_csv(sessions: Sequence[Session]) -> str:
    """One row per session (its latest version); per-period energy is in the JSON output. An unknown
    register or energy is an empty field, never 0; `flags` are space-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in sessions:
        writer.writerow(
            (
                s.session_id,
                s.charger_id,
                s.transaction_id,
                s.id_tag or "",
                iso_utc(s.started_utc),
                "" if s.stopped_utc is None else iso_utc(s.stopped_utc),
                "" if s.meter_start_wh is None else s.meter_start_wh,
                "" if s.meter_stop_wh is None else s.meter_stop_wh,
                "" if s.energy_wh is None else s.energy_wh,
                s.stop_reason or "",
                s.version,
                s.energy_status.value,
                " ".join(f.value for f in s.flags),
            )
        )
    return out.getvalue()


def format_json_lines(sessions: Sequence[Session]) -> str:
    """One JSON object per session, with its 15-minute periods."""
    return "".join(json.dumps(session_to_json(s), separators=(",", ":")) + "\n" for s in sessions)
