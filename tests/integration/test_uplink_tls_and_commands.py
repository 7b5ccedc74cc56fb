"""TLS with client certificates (made by the test), MQTT 3.1.1, and commands over a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.sessions.ledger import Ledger
from controller.uplink.commands import AuthListUpdate, SiteLimitChange
from controller.uplink.service import Uplink
from controller.uplink.telemetry import ChargerTelemetry, SiteTelemetry
from controller.uplink.topics import Topics
from drivers.clock import SystemClock
from tests.support.certs import Pki, make_pki
from tests.support.mosquitto import Mosquitto, TlsFiles
from tests.support.mqtt311_front import Mqtt311Front
from tests.support.mqtt_backend import Backend
from tests.support.uplink_harness import RecordingHandler, fast_config, fill, outbox_msg_ids
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TOPICS = Topics("garage/v1", "test-site")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker", tls=TlsFiles(pki.ca_file, pki.server_cert, pki.server_key))
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "ledger.sqlite") as opened:
        yield opened


@contextlib.asynccontextmanager
async def running(backend: Backend) -> AsyncIterator[Backend]:
    task = asyncio.create_task(backend.run(), name="test-backend")
    await backend.wait_subscribed()
    try:
        yield backend
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_sessions_over_mutual_tls(broker: Mosquitto, ledger: Ledger, pki: Pki) -> None:
    await fill(ledger, 50)
    config = fast_config(
        broker.tls_url, ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key
    )
    async with running(Backend(broker.port, TOPICS)) as backend:
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()):
            await backend.wait_for(100, timeout_s=20)
        backend.check_exactly_once_per_session_in_order(await outbox_msg_ids(ledger))


@pytest.mark.parametrize("problem", ["unknown_server_ca", "no_client_cert", "untrusted_client_cert"])
async def test_tls_refuses_what_it_must(broker: Mosquitto, ledger: Ledger, pki: Pki, problem: str) -> None:
    await fill(ledger, 5)
    settings: dict[str, Any] = {
        "ca_file": pki.ca_file,
        "cert_file": pki.client_cert,
        "key_file": pki.client_key,
    }
    if problem == "unknown_server_ca":
        settings["ca_file"] = pki.other_ca_file
    elif problem == "no_client_cert":
        settings.update(cert_file=None, key_file=None)
    else:
        settings.update(cert_file=pki.other_client_cert, key_file=pki.other_client_key)
    config = fast_config(broker.tls_url, connect_timeout_s=1.0, **settings)
    async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
        await until(lambda: uplink.connection_failures >= 1, 10, "a failed connection")
        assert uplink.connects == 0
    assert await ledger.backlog() == 10  # nothing left, nothing lost


async def test_mqtt_3_1_1_works_too(broker: Mosquitto, ledger: Ledger) -> None:
    await fill(ledger, 100)
    config = fast_config(broker.url, protocol="3.1.1")
    async with running(Backend(broker.port, TOPICS)) as backend:
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            await backend.wait_for(200, timeout_s=20)
            assert uplink.mqtt5 is False
        backend.check_exactly_once_per_session_in_order(await outbox_msg_ids(ledger))


async def test_auto_falls_back_to_3_1_1_when_the_broker_refuses_5(broker: Mosquitto, ledger: Ledger) -> None:
    await fill(ledger, 20)
    async with running(Backend(broker.port, TOPICS)) as backend, Mqtt311Front(broker.port) as front:
        config = fast_config(f"mqtt://127.0.0.1:{front.port}", protocol="auto")
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            await backend.wait_for(40, timeout_s=20)
            assert uplink.mqtt5 is False
            assert uplink.connects == 1
        assert front.refused_v5 == 1
        backend.check_exactly_once_per_session_in_order(await outbox_msg_ids(ledger))


def _command(command_id: str, args: dict[str, Any], *, expires_in_s: float = 60) -> bytes:
    expires = datetime.now(UTC) + timedelta(seconds=expires_in_s)
    return json.dumps(
        {"schema": "garage.cmd/1", "id": command_id, "expires_utc": expires.isoformat(), "args": args}
    ).encode()


async def test_commands_round_trip_and_bad_ones_are_refused(broker: Mosquitto, ledger: Ledger) -> None:
    handler = RecordingHandler()
    async with (
        Uplink(fast_config(broker.url), ledger, SystemClock(), command_handler=handler) as uplink,
        aiomqtt.Client("127.0.0.1", broker.port, identifier="backend-cmd") as backend,
    ):
        await asyncio.wait_for(uplink.wait_connected(), 5)
        await backend.subscribe(TOPICS.command_result, qos=1)
        sent = [
            ("site-limit", _command("c-1", {"fuse_id": "main", "limit_a": 200.0})),
            (
                "auth-list",
                _command(
                    "c-2",
                    {
                        "list_version": 7,
                        "update_type": "full",
                        "entries": [
                            {"id_tag": "AA11", "kind": "resident", "status": "accepted"},
                            {
                                "id_tag": "EV-42",
                                "kind": "ev_association",
                                "status": "blocked",
                                "expiry_utc": "2027-01-01T00:00:00Z",
                            },
                        ],
                    },
                ),
            ),
            ("site-limit", _command("c-1", {"fuse_id": "main", "limit_a": 10.0})),  # replayed id
            ("site-limit", _command("c-3", {"fuse_id": "main", "limit_a": 50.0}, expires_in_s=-1)),
            ("remote-start", _command("c-4", {"charger_id": "CP-99", "id_tag": "AA11"})),
            ("remote-stop", b"\xff\xfe not json"),
            ("firmware", _command("c-5", {})),
            ("charger-availability", _command("c-6", {"charger_id": "CP-01", "available": "yes"})),
        ]
        for name, payload in sent:
            await backend.publish(f"{TOPICS.base}/cmd/{name}", payload, qos=1)
        results: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            async for message in backend.messages:
                results.append(json.loads(bytes(message.payload)))
                if len(results) == len(sent):
                    break
    by_order = [(r["id"], r["status"], r["reason"]) for r in results]
    assert by_order == [
        ("c-1", "accepted", None),
        ("c-2", "accepted", None),
        ("c-1", "accepted", None),  # the stored result, not a second execution
        ("c-3", "rejected", "expired"),
        ("c-4", "rejected", "unknown_charger"),
        (None, "rejected", "invalid"),
        ("c-5", "rejected", "unknown_command"),
        ("c-6", "rejected", "invalid"),
    ]
    assert results[0]["result"] == {"applied_limit_a": 125.0, "rating_a": 125.0, "clamped": True}
    assert results[2]["result"] == results[0]["result"]
    assert [type(c) for c in handler.commands] == [SiteLimitChange, AuthListUpdate]
    limit = handler.commands[0]
    assert isinstance(limit, SiteLimitChange)
    assert limit.limit_a == 125.0
    assert limit.requested_a == 200.0
    audit = await ledger.command_audit()
    assert len(audit) == len(sent)
    assert [a["status"] for a in audit][::-1][:3] == ["accepted", "accepted", "replayed"]


async def test_telemetry_is_published_with_expiry(broker: Mosquitto, ledger: Ledger) -> None:
    config = fast_config(broker.url, site_telemetry_every_s=0.2, charger_telemetry_min_gap_s=0.1)
    now = datetime.now(UTC)
    site = SiteTelemetry(
        now, "normal", (88.1, None, 70.2), (123.0, 123.0, 123.0), (34.9, None, 52.8), (32.0, 32.0, 0.0)
    )
    charger = ChargerTelemetry("CP-01", True, "charging", (16.0, 16.1, None), 16.0, 123456.0, 5300, "P-017")
    async with (
        aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="backend-tele", protocol=aiomqtt.ProtocolVersion.V5
        ) as backend,
        Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink,
    ):
        await backend.subscribe(f"{TOPICS.base}/telemetry/#", qos=1)
        uplink.telemetry.update_site(site)
        uplink.telemetry.update_charger(charger)
        await asyncio.wait_for(uplink.wait_connected(), 5)
        seen: dict[str, list[dict[str, Any]]] = {"site": [], "chargers": []}
        expiry: dict[str, int] = {}
        async with asyncio.timeout(10):
            async for message in backend.messages:
                kind = message.topic.value.rsplit("/", 1)[1]
                seen[kind].append(json.loads(bytes(message.payload)))
                assert message.properties is not None
                expiry[kind] = int(message.properties.MessageExpiryInterval)  # type: ignore[attr-defined]
                if len(seen["site"]) == 1 and len(seen["chargers"]) == 1:
                    uplink.telemetry.update_charger(replace(charger, state="suspended_ev", setpoint_a=0.0))
                if len(seen["site"]) >= 3 and len(seen["chargers"]) >= 2:
                    break
    assert seen["site"][0]["currents_a"] == {"L1": 88.1, "L2": None, "L3": 70.2}
    assert seen["chargers"][0]["full"] is True
    assert seen["chargers"][1]["full"] is False
    assert seen["chargers"][1]["chargers"][0]["state"] == "suspended_ev"
    assert seen["chargers"][0]["chargers"][0]["space"] == "P-017"
    assert 0 < expiry["site"] <= 30
    assert 0 < expiry["chargers"] <= 120
