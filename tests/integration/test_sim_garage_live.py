"""The garage with its chargers on real websockets over TLS with basic auth, paced by the SimClock."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from simulator.arrivals import CarArrival
from simulator.cars import CarSpec
from simulator.chargers import ChargerSpec, LinkState
from simulator.clock import SimClock
from simulator.garage import Garage
from simulator.physics import FuseSpec
from simulator.scenario import FaultSpec, GridSpec, Scenario
from tests.integration.sim_csms import CsmsState, running_csms
from tests.support import require_program

pytestmark = pytest.mark.integration


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    openssl = require_program("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


async def test_garage_runs_live_over_tls_with_faults(tls: tuple[ssl.SSLContext, Path]) -> None:
    server_context, cert = tls
    state = CsmsState(pending_boots=0, passwords={"CP-A": "pa", "CP-B": "pb", "CP-C": "pc"})
    car = CarSpec(max_current_a=16, phases=1, response_delay_s=2.0)
    async with running_csms(state, ssl_context=server_context) as (url, _):
        assert url.startswith("wss://")
        scenario = Scenario(
            name="live",
            grid=GridSpec("IT", 230.0),
            fuses=(FuseSpec("main", 63), FuseSpec("c1", 32, parent="main", device="C")),
            chargers=(
                ChargerSpec("CP-A", "c1", lines=("L1", "L2"), password="pa", max_current_a=16, reconnect_s=3),
                ChargerSpec(
                    "CP-B", "main", lines=("L2", "L3"), password="pb", version="2.0.1", max_current_a=16
                ),
                ChargerSpec("CP-C", "main", lines=("L3", "L1", "L2"), password="pc", max_current_a=16),
            ),
            visits=tuple(
                CarArrival(f"v{i}", 5.0 + i, 1000.0, car, 0.3, 0.9, f"TAG{i}", charger=cp)
                for i, cp in enumerate(("CP-A", "CP-B", "CP-C"))
            ),
            faults=(FaultSpec(40.0, "charger_disconnect", "CP-A", duration_s=10.0),),
            duration_s=120.0,
            csms_url=url,
            ca_file=str(cert),
        )
        garage = Garage(scenario, SimClock(40.0, datetime(2026, 11, 22, 17, 0, tzinfo=UTC)))
        rec = await garage.run()
    assert {r.identity for r in state.log if r.action == "BootNotification"} == {"CP-A", "CP-B", "CP-C"}
    assert {p["id_tag"] for p in state.of("StartTransaction")} == {"TAG0", "TAG2"}
    assert [
        e["id_token"]["id_token"] for e in state.of("TransactionEvent") if e["event_type"] == "Started"
    ] == ["TAG1"]
    assert garage.chargers[0].counters["connects"] == 2
    assert rec.rows == pytest.approx(120 / 0.25 / 4, abs=1)
    assert list(rec.link_state[-1]) == [LinkState.BOOTED] * 3
    # Three 16 A single-phase cars, one per line pair: 16 sqrt(3) A on each line of the main fuse.
    main = rec.fuse_a[-1, rec.fuse_ids.index("main")]
    assert np.allclose(main, 16 * np.sqrt(3), rtol=1e-5)
    assert all(v.delivered_wh > 0 for v in rec.visits)
