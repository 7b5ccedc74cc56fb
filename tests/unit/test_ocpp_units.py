"""Pure parts of drivers/ocpp: framing, profiles, meter values, authorization, admission helpers."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp import profiles, rpc
from drivers.ocpp.authorization import (
    AuthDecision,
    AuthEntry,
    AuthStatus,
    LocalAuthList,
    TagKind,
    UpdateResult,
)
from drivers.ocpp.config import ChargePointConfig, CsmsConfig, Quirks, SecurityProfile
from drivers.ocpp.meter import BadMeterValue, parse_meter_values
from drivers.ocpp.security import LoginLimiter, basic_auth_password, peer_common_name
from drivers.ocpp.transactions import InMemoryTransactionIds

NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)

# ------------------------------------------------------------------------------------------ framing


def test_parse_frame_kinds() -> None:
    assert rpc.parse_frame('[2,"a","Heartbeat",{}]') == rpc.Call("a", "Heartbeat", {})
    assert rpc.parse_frame('[3,"a",{"x":1}]') == rpc.CallResult("a", {"x": 1})
    assert rpc.parse_frame('[4,"a","NotSupported","no",{}]') == rpc.CallError("a", "NotSupported", "no", {})


@pytest.mark.parametrize(
    ("raw", "counter", "reply_id"),
    [
        (b"[2]", rpc.C_BAD_JSON, "-1"),
        ('[2,"a","H",{"v":Infinity}]', rpc.C_BAD_JSON, "-1"),
        ("[]", rpc.C_BAD_FRAME, "-1"),
        ('[2.0,"a","H",{}]', rpc.C_BAD_MESSAGE_TYPE, "a"),
        ('[true,"a","H",{}]', rpc.C_BAD_MESSAGE_TYPE, "a"),
        ('[2,"' + "x" * 37 + '","H",{}]', rpc.C_BAD_FRAME, "-1"),
        ('[2,5,"H",{}]', rpc.C_BAD_FRAME, "-1"),
        ('[3,"a",[]]', rpc.C_BAD_FRAME, "a"),
        ('[4,"a","c","d"]', rpc.C_BAD_FRAME, "a"),
        ("[" * 100000, rpc.C_BAD_JSON, "-1"),
    ],
)
def test_parse_frame_faults(raw: str | bytes, counter: str, reply_id: str) -> None:
    with pytest.raises(rpc.OcppFault) as fault:
        rpc.parse_frame(raw)
    assert fault.value.counter == counter
    assert fault.value.unique_id == reply_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps), st.binary(max_size=50)))
def test_parse_frame_only_ever_raises_ocpp_faults(raw: str | bytes) -> None:
    fault: rpc.OcppFault | None = None
    try:
        frame = rpc.parse_frame(raw)
    except rpc.OcppFault as exc:
        fault = exc
    else:
        assert isinstance(frame, rpc.Call | rpc.CallResult | rpc.CallError)
    if fault is not None:
        assert fault.counter in (rpc.C_BAD_JSON, rpc.C_BAD_FRAME, rpc.C_BAD_MESSAGE_TYPE)
        assert fault.unique_id == "-1" or 0 < len(fault.unique_id) <= rpc.MAX_UNIQUE_ID_CHARS


def test_error_codes_use_each_versions_spelling() -> None:
    assert json.loads(rpc.error_frame("1.6", "a", "FormatViolation", "x"))[2] == "FormationViolation"
    assert json.loads(rpc.error_frame("2.0.1", "a", "FormatViolation", "x"))[2] == "FormatViolation"
    assert json.loads(rpc.error_frame("1.6", "a", "OccurrenceConstraintViolation", "x"))[2] == (
        "OccurenceConstraintViolation"
    )


# ----------------------------------------------------------------------------------------- profiles


@given(st.floats(min_value=0, max_value=80, allow_nan=False))
def test_floor_tenth_never_rounds_up(value: float) -> None:
    rounded = profiles.floor_tenth(value)
    assert rounded <= value + 1e-6
    assert value - rounded < 0.1 + 1e-9
    assert math.isclose(rounded * 10, round(rounded * 10), abs_tol=1e-9)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@given(
    current_a=st.floats(min_value=0, max_value=80, allow_nan=False),
    phases=st.sampled_from([1, 2, 3]),
    quirks=st.builds(
        Quirks,
        stack_level_zero_only=st.booleans(),
        limit_in_watts=st.booleans(),
        phase_to_use=st.sampled_from([None, 1, 2, 3]),
    ),
    transaction=st.sampled_from([None, "17"]),
    lease_s=st.floats(min_value=0.5, max_value=3600),
)
def test_every_profile_we_build_passes_the_ocpp_schema(
    version: rpc.Version,
    current_a: float,
    phases: int,
    quirks: Quirks,
    transaction: str | None,
    lease_s: float,
) -> None:
    lease = profiles.lease_profile_request(
        version,
        2,
        current_a,
        lease_s=lease_s,
        phases=phases,
        quirks=quirks,
        now_utc=NOW,
        transaction_id=transaction,
    )
    rpc.validate(version, rpc.CALL, "SetChargingProfile", lease)
    safe = profiles.safe_profile_request(version, current_a, phases, quirks)
    rpc.validate(version, rpc.CALL, "SetChargingProfile", safe)
    if version == "2.0.1":
        rpc.validate(
            version, rpc.CALL, "SetChargingProfile", profiles.station_max_profile_request(32, 3, quirks, NOW)
        )


def test_lease_profile_shape_16() -> None:
    lease = profiles.lease_profile_request(
        "1.6", 1, 16.37, lease_s=30, phases=3, quirks=Quirks(), now_utc=NOW, transaction_id="5"
    )
    profile = lease["csChargingProfiles"]
    assert profile["transactionId"] == 5
    assert profile["stackLevel"] == 1
    assert profile["chargingSchedule"]["startSchedule"] == "2026-11-22T17:00:00Z"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.3, "numberPhases": 3}
    ]


def test_limit_in_watts_and_back() -> None:
    quirks = Quirks(limit_in_watts=True, nominal_voltage_v=230)
    limit = profiles.to_limit(16, 3, quirks)
    assert (limit.unit, limit.value) == ("W", 11040)
    assert profiles.limit_as_amps(limit, quirks) == pytest.approx(16)
    with pytest.raises(ValueError, match="finite"):
        profiles.to_limit(float("nan"), 3, quirks)


# ------------------------------------------------------------------------------------- meter values


def test_meter_values_units_phases_and_contexts() -> None:
    (sample,) = parse_meter_values(
        [
            {
                "timestamp": "2026-11-22T17:15:00Z",
                "sampledValue": [
                    {
                        "value": "12.5",
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "kWh",
                        "context": "Sample.Clock",
                    },
                    {"value": "7.1", "measurand": "Current.Import", "phase": "L2"},
                    {"value": "7.2", "measurand": "Current.Import", "phase": "L3-N"},
                    {"value": "3.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "99", "measurand": "Current.Import", "phase": "L1", "location": "EV"},
                    {"value": "abc", "format": "SignedData"},
                ],
            }
        ],
        phases=3,
    )
    assert sample.energy_wh == 12500
    assert sample.currents_a == (None, 7.1, 7.2)
    assert sample.power_w == 3200
    assert sample.clock_aligned
    assert sample.timestamp_utc == datetime(2026, 11, 22, 17, 15, tzinfo=UTC)


def test_meter_values_201_multiplier_and_single_phase_without_phase() -> None:
    (sample,) = parse_meter_values(
        [
            {
                "timestamp": "2026-11-22T17:15:00+01:00",
                "sampledValue": [
                    {"value": 12.5, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                    {"value": 9.5, "measurand": "Current.Import"},
                ],
            }
        ],
        phases=1,
    )
    assert sample.energy_wh == 12500
    assert sample.currents_a == (9.5, None, None)
    assert sample.power_w is None
    assert sample.timestamp_utc.hour == 16


@pytest.mark.parametrize(
    "sampled",
    [
        {"value": "NaN"},
        {"value": "inf"},
        {"value": "-1", "measurand": "Energy.Active.Import.Register"},
        {"value": True},
        {"value": "twelve"},
    ],
)
def test_meter_values_refused(sampled: dict[str, object]) -> None:
    with pytest.raises(BadMeterValue):
        parse_meter_values([{"timestamp": "2026-11-22T17:15:00Z", "sampledValue": [sampled]}], phases=3)
    with pytest.raises(BadMeterValue):
        parse_meter_values([{"timestamp": "yesterday", "sampledValue": []}], phases=3)


# ------------------------------------------------------------------------------------ authorization


def test_local_auth_list_versions_expiry_and_cache() -> None:
    auth = LocalAuthList(cache_ttl_s=60)
    assert (
        auth.apply_full(
            3,
            {"aa11": AuthEntry(TagKind.RESIDENT), "BB22": AuthEntry(TagKind.EV_ASSOCIATION, expiry_utc=NOW)},
        )
        is UpdateResult.ACCEPTED
    )
    assert auth.authorize("AA11", NOW).accepted
    assert auth.authorize("aa11", NOW).kind is TagKind.RESIDENT
    assert auth.authorize("BB22", NOW - timedelta(seconds=1)).accepted
    assert auth.authorize("BB22", NOW).status is AuthStatus.EXPIRED
    assert auth.apply_differential(3, {"CC33": AuthEntry(TagKind.RESIDENT)}) is UpdateResult.VERSION_MISMATCH
    assert auth.authorize("CC33", NOW).status is AuthStatus.INVALID
    assert (
        auth.apply_differential(4, {"CC33": AuthEntry(TagKind.RESIDENT), "AA11": None})
        is UpdateResult.ACCEPTED
    )
    assert auth.version == 4
    assert auth.authorize("CC33", NOW).accepted
    assert auth.authorize("AA11", NOW).status is AuthStatus.INVALID
    auth.apply_differential(5, {"DD44": AuthEntry(TagKind.RESIDENT, status=AuthStatus.BLOCKED)})
    assert auth.authorize("DD44", NOW).status is AuthStatus.BLOCKED

    auth.remember("EE55", AuthDecision(AuthStatus.ACCEPTED, kind=TagKind.EV_ASSOCIATION), NOW)
    assert auth.authorize("EE55", NOW + timedelta(seconds=59)).source == "cache"
    assert auth.authorize("EE55", NOW + timedelta(seconds=61)).status is AuthStatus.INVALID
    assert auth.apply_full(0, {}) is UpdateResult.INVALID
    assert auth.apply_full(6, {"": AuthEntry(TagKind.RESIDENT)}) is UpdateResult.INVALID
    assert auth.authorize("x" * 37, NOW).status is AuthStatus.INVALID


def test_cache_is_bounded() -> None:
    auth = LocalAuthList(cache_size=2)
    for tag in ("A1", "B2", "C3"):
        auth.remember(tag, AuthDecision(AuthStatus.ACCEPTED), NOW)
    assert not auth.authorize("A1", NOW).accepted
    assert auth.authorize("C3", NOW).accepted


async def test_in_memory_transaction_ids() -> None:
    ids = InMemoryTransactionIds(first_id=10)
    first = await ids.id_for_start("cp-1", "T", 100.0, NOW)
    assert await ids.id_for_start("cp-1", "T", 100.0, NOW) == first == 10
    assert await ids.id_for_start("cp-1", "T", 100.0, NOW + timedelta(seconds=1)) == 11
    assert await ids.stop(first, 200.0, NOW)
    assert not await ids.stop(first, 200.0, NOW)
    assert not await ids.stop(999, 200.0, NOW)


# -------------------------------------------------------------------------------- admission helpers


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_auth_parsing() -> None:
    assert basic_auth_password(_basic("CP1:secret:with:colons"), "CP1") == "secret:with:colons"
    assert basic_auth_password(_basic("a:b:pw"), "a:b") == "pw"  # 2.0.1 identities may hold ':'
    assert basic_auth_password(_basic("CP2:secret"), "CP1") is None
    assert basic_auth_password(_basic("CP1secret"), "CP1") is None
    assert basic_auth_password("Bearer x", "CP1") is None
    assert basic_auth_password("Basic !!!", "CP1") is None
    assert basic_auth_password(None, "CP1") is None


def test_login_limiter_per_address_and_pair() -> None:
    limiter = LoginLimiter(window_s=60, per_address=5, per_identity_address=3, lockout_s=30)
    for i in range(2):
        assert not limiter.failure("10.0.0.9", "CP1", float(i))
    assert limiter.failure("10.0.0.9", "CP1", 2.0)  # third failure for the pair locks it
    assert limiter.blocked("10.0.0.9", "CP1", 3.0)
    assert not limiter.blocked("10.0.0.9", "CP2", 3.0)
    assert not limiter.blocked("10.0.0.8", "CP1", 3.0)  # the real charger elsewhere is unaffected
    assert not limiter.blocked("10.0.0.9", "CP1", 33.0)
    limiter.failure("10.0.0.9", "CP7", 34.0)
    assert limiter.failure("10.0.0.9", "CP8", 35.0)  # fifth from the address within the window
    assert limiter.blocked("10.0.0.9", "CP9", 36.0)
    # Old failures leave the window.
    slow = LoginLimiter(window_s=10, per_address=3, per_identity_address=3, lockout_s=30)
    assert not any(slow.failure("a", "x", t) for t in (0.0, 11.0, 22.0, 33.0))


def test_peer_common_name() -> None:
    cert = {"subject": ((("countryName", "NO"),), (("commonName", "CP-77"),))}
    assert peer_common_name(cert) == "CP-77"
    assert peer_common_name({}) is None
    assert peer_common_name(None) is None


# ------------------------------------------------------------------------------------------- config


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="tls_cert_file"):
        CsmsConfig(security_profile=SecurityProfile.TLS_BASIC_AUTH)
    with pytest.raises(ValueError, match="tls_ca_file"):
        CsmsConfig(security_profile=SecurityProfile.MUTUAL_TLS, tls_cert_file="c", tls_key_file="k")
    with pytest.raises(ValueError, match="default_subprotocol"):
        CsmsConfig(subprotocols=("ocpp2.0.1",))
    with pytest.raises(ValueError, match="identity"):
        ChargePointConfig(identity="a/b", connectors={1: "x"})
    with pytest.raises(ValueError, match="connector"):
        ChargePointConfig(identity="a", connectors={0: "x"})
    with pytest.raises(ValueError, match="safe_current_a"):
        ChargePointConfig(identity="a", connectors={1: "x"}, safe_current_a=40, max_current_a=32)
