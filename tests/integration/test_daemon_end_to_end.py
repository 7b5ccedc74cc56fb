"""The whole daemon: a real broker, a charger over OCPP, the backend's commands, `sitectl` on the socket.

Checks what only the composition does: a backend's authorization list reaches the OCPP server and
survives a restart; a session made by a charger reaches the backend and leaves the outbox only when
acknowledged; `sitectl status --json` is a snapshot `sitectl balance` accepts; `sitectl sessions`
shows the session; a site without a meter runs every charger on its safe current.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.authorization import AuthListStore
from controller.localapi.client import call
from controller.sessions import Ledger
from controller.uplink.topics import Topics
from drivers.ocpp import LocalAuthList
from tests.integration.ocpp_support import PASSWORD_HASH, call16, connected, eventually, now_iso
from tests.support import REPO_ROOT, free_tcp_port, sitectl_argv, subprocess_env
from tests.support.daemon_rig import daemon_running
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.hil]

SITE = """
[site]
id = "e2e"

[grid]
type = "IT"

[policy]
lease_s = 20

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c1"
parent = "main"
limit_a = 32

[ocpp]
listen = "127.0.0.1:{ocpp_port}"

[[chargers]]
id = "E2E-1"
protocol = "ocpp"
fuse = "c1"
lines = ["L1", "L2", "L3"]
max_a = 32
safe_current_a = 8
password_hash = "{password_hash}"

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
prefix = "garage/v1"

[storage]
path = "{folder}/ledger.sqlite"

[control]
socket_path = "{folder}/control.sock"
"""


def command(command_id: str, args: dict[str, Any]) -> bytes:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    return json.dumps(
        {"schema": "garage.cmd/1", "id": command_id, "expires_utc": expires.isoformat(), "args": args}
    ).encode()


async def test_backend_list_charger_session_and_local_tools(tmp_path: Path, broker: Mosquitto) -> None:
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        SITE.format(
            ocpp_port=free_tcp_port(),
            mqtt_port=broker.port,
            password_hash=PASSWORD_HASH,
            folder=tmp_path,
        )
    )
    topics = Topics("garage/v1", "e2e")
    socket_path = tmp_path / "control.sock"
    session_messages: list[dict[str, Any]] = []

    async with (
        daemon_running(site_file) as daemon,
        aiomqtt.Client("127.0.0.1", broker.port, identifier="e2e-backend") as backend,
    ):
        await backend.subscribe([(topics.command_result, 1), (topics.sessions, 1)])
        # Ready does not wait for the broker (the box runs without one); a command published before
        # the daemon's first subscription would be lost on a fresh broker session.
        assert daemon.uplink is not None
        async with asyncio.timeout(15):
            await daemon.uplink.wait_connected()
        # The backend sends its authorization list: one resident's tag.
        await backend.publish(
            f"{topics.base}/cmd/auth-list",
            command(
                "list-1",
                {
                    "list_version": 1,
                    "update_type": "full",
                    "entries": [{"id_tag": "RESIDENT-1", "kind": "resident", "status": "accepted"}],
                },
            ),
            qos=1,
        )
        results: list[dict[str, Any]] = []

        async def pump(until: Any) -> None:
            async with asyncio.timeout(20):
                async for message in backend.messages:
                    data = json.loads(bytes(message.payload))
                    if message.topic.value == topics.command_result:
                        results.append(data)
                    else:
                        session_messages.append(data)
                        await backend.publish(
                            topics.ack,
                            json.dumps({"schema": "garage.ack/1", "msg_ids": [data["msg_id"]]}),
                            qos=1,
                        )
                    if until():
                        return

        await pump(lambda: bool(results))
        assert results[0]["status"] == "accepted", results

        assert daemon.csms is not None
        url = f"ws://127.0.0.1:{daemon.csms.port}/ocpp"
        async with connected(url, "E2E-1") as cp:
            await cp.boot_until_accepted()
            # The safe profile was installed at boot, before Accepted, at the configured 8 A.
            safe = [p for _, p in cp.rec.profiles if p["stack_level"] == 0]
            assert safe
            assert safe[0]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 8
            stranger = await cp.call(call16.Authorize(id_tag="STRANGER"))
            assert stranger.id_tag_info["status"] == "Invalid"
            resident = await cp.call(call16.Authorize(id_tag="RESIDENT-1"))
            assert resident.id_tag_info["status"] == "Accepted"
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
            start = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="RESIDENT-1", meter_start=1000, timestamp=now_iso()
                )
            )
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            # No meter on this site: the daemon keeps the charger on its safe current.
            await eventually(lambda: any(p["stack_level"] > 0 for _, p in cp.rec.profiles), timeout_s=10)
            lease = [p for _, p in cp.rec.profiles if p["stack_level"] > 0][-1]
            assert lease["charging_schedule"]["charging_schedule_period"][0]["limit"] <= 8
            await cp.call(
                call16.StopTransaction(
                    transaction_id=start.transaction_id, meter_stop=3500, timestamp=now_iso(), reason="Local"
                )
            )
        await pump(lambda: any(m.get("stopped_utc") for m in session_messages))
        final = [m for m in session_messages if m.get("stopped_utc")][-1]
        assert final["energy_wh"] == 2500
        assert final["id_tag"] == "RESIDENT-1"
        assert [m["seq"] for m in session_messages] == sorted(m["seq"] for m in session_messages)

        # The disconnect reaches the allocation with the next cycle (at most half a second later).
        async with asyncio.timeout(10):
            while True:
                status = await call(socket_path, "status")
                if status["allocation"]["chargers"]["E2E-1"]["limited_by"] == "offline":
                    break
                await asyncio.sleep(0.1)
        assert status["allocation"]["failsafe"] is not None  # no meter: safe currents
        snapshot_file = tmp_path / "snapshot.json"
        json_out = await asyncio.to_thread(
            subprocess.run,
            sitectl_argv("status", "--json", "--socket", str(socket_path)),
            cwd=REPO_ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        snapshot_file.write_text(json_out.stdout)
        balanced = await asyncio.to_thread(
            subprocess.run,
            sitectl_argv("balance", str(snapshot_file)),
            cwd=REPO_ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert balanced.returncode == 0, balanced.stderr
        decided = json.loads(balanced.stdout)
        assert decided["failsafe"] is not None
        assert decided["chargers"]["E2E-1"]["limited_by"] == "offline"  # the charger has gone
        csv = await asyncio.to_thread(
            subprocess.run,
            sitectl_argv("sessions", "--csv", "--socket", str(socket_path)),
            cwd=REPO_ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        rows = csv.stdout.strip().splitlines()
        assert rows[0].startswith("session_id,charger_id")
        assert len(rows) == 2
        assert ",E2E-1," in rows[1]
        assert ",2500," in rows[1]
        # Acknowledged messages leave the outbox; let the relay see the last acks.
        assert daemon.ledger is not None
        ledger_view = daemon.ledger

        async def drained() -> bool:
            return await ledger_view.backlog() == 0

        await until(drained, 10.0, "an empty outbox")

    # After the daemon is gone, the list it was sent is still in the ledger for the next start.
    async with await Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        restored = LocalAuthList()
        assert await AuthListStore(ledger).load_into(restored) == 1
        assert restored.version == 1
        (session,) = await ledger.list_sessions()
        assert session.energy_wh == 2500
        assert await ledger.backlog() == 0
