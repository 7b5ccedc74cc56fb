"""HAN list decoding: information field -> MeterReading, and the whole byte-stream pipeline.

Three list layouts exist in the field, told apart by shape, not by vendor:
- structures: each object is a structure (OBIS, value[, (scaler, unit)]) - Aidon, Landis+Gyr;
- pairs: a flat run of OBIS, value, OBIS, value, optionally led by the list version and padded with
  null-data - Kamstrup, Swedish Kaifa;
- positional: bare values whose meaning follows from their count - Kaifa KFM_001.
The vendor comes from the list version when the list carries one, else from the layout.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Set
from datetime import tzinfo

from drivers.contracts import MeterList, MeterReading, MeterVendor, ReceiveTime
from drivers.han.axdr import Value
from drivers.han.dlms import LLC_HEADER, parse_notification
from drivers.han.framer import HdlcFrame, HdlcFramer
from drivers.han.lists import (
    CT_SCALED,
    FIELD_QUANTITY,
    IMPLICIT_SCALERS,
    KAIFA_POSITIONS,
    OBIS_FIELDS,
    Quantity,
    same_list_family,
    vendor_from_list_version,
)
from drivers.han.meter_time import METER_TIMEZONE, cosem_datetime
from drivers.han.reasons import DropReason, FrameRejected

MAX_SCALER = 9
MAX_SEGMENTED_APDU_BYTES = 16 * 1024

_ENERGY_FIELDS = frozenset(
    {
        "energy_import_wh",
        "energy_export_wh",
        "reactive_energy_import_varh",
        "reactive_energy_export_varh",
    }
)
_FULL_LIST_FIELDS = frozenset(
    {
        "list_version",
        "meter_id",
        "meter_model",
        "current_l1_a",
        "current_l2_a",
        "current_l3_a",
        "voltage_l1_v",
        "voltage_l2_v",
        "voltage_l3_v",
    }
)
_CONTENT_REASONS = (
    DropReason.ENCRYPTED,
    DropReason.UNSUPPORTED_APDU,
    DropReason.UNDECODABLE,
    DropReason.VENDOR_MISMATCH,
    DropReason.LOST_SEGMENTS,
)
_STRUCTURED_VENDORS = (MeterVendor.AIDON, MeterVendor.LANDIS_GYR)


class Layout(enum.Enum):
    STRUCTURES = "structures"
    PAIRS = "pairs"
    POSITIONAL = "positional"


def _undecodable(detail: str) -> FrameRejected:
    return FrameRejected(DropReason.UNDECODABLE, detail)


def _is_obis(value: Value) -> bool:
    return type(value) is bytes and len(value) == 6


RawObjects = dict[str, tuple[Value, int | None]]


def _from_structures(body: list[Value]) -> RawObjects:
    objects: RawObjects = {}
    for index, element in enumerate(body):
        if element is None:
            continue
        if type(element) is not list or len(element) < 2 or not _is_obis(element[0]):
            raise _undecodable(f"element {index} is not an (OBIS, value) structure")
        obis = element[0]
        assert isinstance(obis, bytes)
        field = OBIS_FIELDS.get((obis[0], obis[2], obis[3], obis[4]))
        if field is None:
            continue
        scaler: int | None = None
        if len(element) >= 3:
            scaler_unit = element[2]
            if type(scaler_unit) is not list or len(scaler_unit) != 2 or type(scaler_unit[0]) is not int:
                raise _undecodable(f"element {index} has a malformed scaler/unit")
            scaler = scaler_unit[0]
        objects[field] = (element[1], scaler)
    return objects


def _from_pairs(body: list[Value]) -> tuple[RawObjects, bool]:
    """Objects of a flat OBIS/value list, and whether the OBIS codes use channel B = 1 (Kamstrup)."""
    objects: RawObjects = {}
    channel_one = False
    i = 0
    n = len(body)
    if not _is_obis(body[0]):
        objects["list_version"] = (body[0], None)
        i = 1
    while i < n:
        obis = body[i]
        if obis is None:  # Kamstrup pads absent objects with null-data
            i += 1
            continue
        if not _is_obis(obis):
            raise _undecodable(f"element {i}: OBIS code expected")
        if i + 1 >= n:
            raise _undecodable(f"element {i}: OBIS code without a value")
        assert isinstance(obis, bytes)
        if obis[1] == 1:
            channel_one = True
        field = OBIS_FIELDS.get((obis[0], obis[2], obis[3], obis[4]))
        if field is not None:
            objects[field] = (body[i + 1], None)
        i += 2
    return objects, channel_one


def _from_positions(body: list[Value]) -> RawObjects:
    names = KAIFA_POSITIONS.get(len(body))
    if names is None:
        raise _undecodable(f"a list of {len(body)} unnamed values matches no known Kaifa list")
    return {name: (value, None) for name, value in zip(names, body, strict=True)}


def _text(value: Value, field: str) -> str | None:
    if type(value) is bytes:
        text = value.decode("latin-1")
    elif type(value) is str:
        text = value
    else:
        raise _undecodable(f"{field}: text expected, got {type(value).__name__}")
    # The L&G meter id is NUL-padded to 16 bytes.
    text = text.strip("\x00 ")
    return text or None


def _choose_vendor(
    layout: Layout,
    list_version: str | None,
    channel_one: bool,
    forced: MeterVendor | None,
    hint: MeterVendor | None,
) -> MeterVendor:
    stated = vendor_from_list_version(list_version)
    if layout is Layout.POSITIONAL:
        detected = MeterVendor.KAIFA
        if stated is not None and stated is not MeterVendor.KAIFA:
            raise _undecodable(f"list version {list_version!r} in Kaifa's positional layout")
    elif layout is Layout.PAIRS:
        detected = stated or (MeterVendor.KAMSTRUP if channel_one else MeterVendor.KAIFA)
        if detected not in (MeterVendor.KAIFA, MeterVendor.KAMSTRUP):
            raise _undecodable(f"list version {list_version!r} in an OBIS/value pair layout")
    else:
        # A power-only list says nothing about its maker; the stream's last full list does.
        detected = stated or (hint if hint in _STRUCTURED_VENDORS else MeterVendor.AIDON)
    if forced is None:
        return detected
    if not same_list_family(forced, detected):
        raise FrameRejected(
            DropReason.VENDOR_MISMATCH,
            f"configured vendor {forced} but the list is {detected}'s"
            + (f" (list version {list_version!r})" if list_version else ""),
        )
    return forced


def _list_type(present: Set[str]) -> MeterList:
    if not _ENERGY_FIELDS.isdisjoint(present):
        return MeterList.FULL_WITH_ENERGY
    if not _FULL_LIST_FIELDS.isdisjoint(present):
        return MeterList.FULL
    return MeterList.POWER_ONLY


def decode_payload(
    info: bytes,
    received: ReceiveTime,
    *,
    ct_ratio: float = 1.0,
    vendor: MeterVendor | None = None,
    vendor_hint: MeterVendor | None = None,
    tz: tzinfo = METER_TIMEZONE,
) -> MeterReading:
    """Decode the information field of one HAN frame (LLC header + data-notification).

    `vendor` forces the vendor (a list that contradicts it is rejected); `vendor_hint` names the
    vendor of earlier lists from the same meter, for power-only lists that do not say. Raises
    FrameRejected with the drop reason.
    """
    notification = parse_notification(info)
    body = notification.body
    if type(body) is not list or not body:
        raise _undecodable("the notification body is not a non-empty structure or array")
    first = body[0]
    channel_one = False
    if type(first) is list and first and _is_obis(first[0]):
        layout = Layout.STRUCTURES
        objects = _from_structures(body)
    elif _is_obis(first) or (len(body) > 1 and type(first) in (bytes, str) and _is_obis(body[1])):
        layout = Layout.PAIRS
        objects, channel_one = _from_pairs(body)
    else:
        layout = Layout.POSITIONAL
        objects = _from_positions(body)

    raw_version = objects.get("list_version")
    list_version = None
    if raw_version is not None and raw_version[0] is not None:
        list_version = _text(raw_version[0], "list_version")
    chosen = _choose_vendor(layout, list_version, channel_one, vendor, vendor_hint)
    implicit = IMPLICIT_SCALERS.get(chosen)

    values: dict[str, object] = {}
    for field, (raw, scaler) in objects.items():
        if raw is None:
            continue
        quantity = FIELD_QUANTITY[field]
        if quantity is Quantity.TEXT:
            text = _text(raw, field)
            if text is not None:
                values[field] = text
            continue
        if quantity is Quantity.CLOCK:
            if type(raw) is not bytes or len(raw) != 12:
                raise _undecodable(f"{field}: 12-byte date-time expected")
            stated = cosem_datetime(raw, tz)
            if stated is not None:
                values[field] = stated
            continue
        if type(raw) is not int and type(raw) is not float:
            raise _undecodable(f"{field}: number expected, got {type(raw).__name__}")
        if scaler is None:
            if implicit is None:
                raise _undecodable(f"{field}: no scaler in the frame and none known for {chosen}")
            scaler = implicit[quantity]
        if not -MAX_SCALER <= scaler <= MAX_SCALER:
            raise _undecodable(f"{field}: scaler {scaler} out of range")
        # Dividing by a power of ten rounds correctly (93 / 10 == 9.3); multiplying by 0.1 does not.
        value: float = raw * 10**scaler if scaler >= 0 else raw / 10**-scaler
        if ct_ratio != 1.0 and quantity in CT_SCALED:
            value = round(value * ct_ratio, 6)
        values[field] = value

    present = values.keys()
    if not present - {"meter_time"}:
        raise _undecodable("the list holds no known object")
    if "meter_time" not in present and notification.header_time is not None:
        stated = cosem_datetime(notification.header_time, tz)
        if stated is not None:
            values["meter_time"] = stated
    # values holds only MeterReading field names, each with the type FIELD_QUANTITY gives it.
    return MeterReading(vendor=chosen, list_type=_list_type(present), received=received, **values)  # type: ignore[arg-type]


def check_ct_ratio(ct_ratio: float) -> float:
    if not math.isfinite(ct_ratio) or ct_ratio <= 0:
        raise ValueError(f"ct_ratio must be a positive number, got {ct_ratio}")
    return float(ct_ratio)


class HanStreamDecoder:
    """Bytes in, readings out: framing, segment reassembly and decoding, with drop counters.

    One instance per meter. It remembers the vendor of the last list that named it, so power-only
    lists from a Landis+Gyr meter are labelled as such.
    """

    def __init__(
        self,
        *,
        ct_ratio: float = 1.0,
        vendor: MeterVendor | None = None,
        tz: tzinfo = METER_TIMEZONE,
        on_reject: Callable[[FrameRejected], None] | None = None,
    ) -> None:
        self._ct_ratio = check_ct_ratio(ct_ratio)
        self._vendor = vendor
        self._tz = tz
        self._on_reject = on_reject
        self._framer = HdlcFramer()
        self._segments: bytearray | None = None
        self._last_vendor: MeterVendor | None = None
        self._readings = 0
        self._dropped = dict.fromkeys(_CONTENT_REASONS, 0)

    @property
    def counters(self) -> dict[str, int]:
        """`frames` (valid HDLC frames), `readings`, `garbage_bytes`, and one count per DropReason."""
        counters = {"frames": self._framer.frames, "readings": self._readings}
        counters.update({reason.value: count for reason, count in self._framer.dropped.items()})
        counters.update({reason.value: count for reason, count in self._dropped.items()})
        counters["garbage_bytes"] = self._framer.garbage_bytes
        return counters

    @property
    def rejected(self) -> int:
        """Frames dropped for any reason."""
        return sum(self._framer.dropped.values()) + sum(self._dropped.values())

    def feed(self, data: bytes | bytearray | memoryview, received: ReceiveTime) -> list[MeterReading]:
        return self._decode_frames(self._framer.feed(data), received)

    def flush(self, received: ReceiveTime) -> list[MeterReading]:
        """End of input (or the port closed): drop what is incomplete, decode what is left."""
        readings = self._decode_frames(self._framer.flush(), received)
        if self._segments is not None:
            self._segments = None
            self._lost_segments("input ended inside a segmented notification")
        return readings

    def _reject(self, rejection: FrameRejected) -> None:
        self._dropped[rejection.reason] += 1
        if self._on_reject is not None:
            self._on_reject(rejection)

    def _lost_segments(self, detail: str) -> None:
        self._reject(FrameRejected(DropReason.LOST_SEGMENTS, detail))

    def _decode_frames(self, frames: list[HdlcFrame], received: ReceiveTime) -> list[MeterReading]:
        readings: list[MeterReading] = []
        for frame in frames:
            info = self._reassemble(frame.info, frame.segmented)
            if info is None:
                continue
            try:
                reading = decode_payload(
                    info,
                    received,
                    ct_ratio=self._ct_ratio,
                    vendor=self._vendor,
                    vendor_hint=self._last_vendor,
                    tz=self._tz,
                )
            except FrameRejected as rejection:
                self._reject(rejection)
                continue
            if reading.list_version is not None:
                self._last_vendor = reading.vendor
            self._readings += 1
            readings.append(reading)
        return readings

    def _reassemble(self, info: bytes, segmented: bool) -> bytes | None:
        """The complete information field once the last segment arrived, else None.

        A segment that starts with the LLC header begins a new notification; one that does not
        continues the pending one.
        """
        starts_new = info[:3] == LLC_HEADER
        pending = self._segments
        if pending is not None and starts_new:
            self._segments = pending = None
            self._lost_segments("a new notification began before the last segment")
        if pending is None:
            if not segmented:
                return info
            if not starts_new:
                self._lost_segments("continuation segment without its start")
                return None
            self._segments = bytearray(info)
            return None
        pending += info
        if len(pending) > MAX_SEGMENTED_APDU_BYTES:
            self._segments = None
            self._lost_segments("segmented notification too long")
            return None
        if segmented:
            return None
        self._segments = None
        return bytes(pending)
