"""Admission: basic auth, unknown identities, adoption, duplicates, rate limits, TLS profiles 2 and 3."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from drivers.ocpp import SecurityEvent, SecurityProfile
from drivers.ocpp.config import LoginConfig, OnboardingConfig
from drivers.ocpp.passwords import hash_password
from tests.integration.ocpp_support import (
    PASSWORD,
    call16,
    charge_point,
    connected,
    fast_config,
    running_csms,
)
from tests.support import require_program

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def refused_status(url: str, identity: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connected(url, identity, **kwargs):
            pass
    return int(info.value.response.status_code)


async def test_wrong_password_username_and_unknown_identity_are_refused() -> None:
    # Limits above what this test spends: the rate limiter has its own test.
    config = fast_config(auth_failures_per_identity_address=10)
    async with running_csms([charge_point("CP1"), charge_point("CP2")], config) as h:
        assert await refused_status(h.url, "CP1", password="wrong-password-1234") == 401
        assert await refused_status(h.url, "CP1", username="CP2") == 401  # CP2's own password, wrong user
        assert await refused_status(h.url, "CP1", password=None) == 401
        assert await refused_status(h.url, "NOBODY") == 401
        assert await refused_status(h.url.replace("/ocpp", "/other"), "CP1") == 404
        assert h.csms.counters["auth_failures"] == 4
        assert h.csms.counters["unknown_identity"] == 1
        assert h.csms.counters["bad_path"] == 1
        async with connected(h.url, "CP1") as cp:
            await cp.boot_until_accepted()


async def test_subprotocol_choice() -> None:
    async with running_csms([charge_point("CP1")]) as h:
        with pytest.raises(InvalidStatus):
            await websockets.connect(f"{h.url}/CP1", subprotocols=[Subprotocol("ocpp2.0")], open_timeout=5)
        assert h.csms.counters["bad_subprotocol"] == 1
        from tests.integration.ocpp_support import basic_auth

        # No subprotocol offered: served as 1.6 (the listener's default).
        async with websockets.connect(f"{h.url}/CP1", additional_headers=basic_auth("CP1", PASSWORD)) as ws:
            await ws.send('[2,"1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
            reply = await ws.recv()
            assert '"status":"Pending"' in str(reply)
    async with running_csms([charge_point("CP1")], fast_config(default_subprotocol=None)) as h:
        with pytest.raises(InvalidStatus):
            await websockets.connect(
                f"{h.url}/CP1", additional_headers=basic_auth("CP1", PASSWORD), open_timeout=5
            )


async def test_duplicate_identity_replaces_only_after_authenticating() -> None:
    events: list[SecurityEvent] = []
    async with (
        running_csms([charge_point("CP1")], security_sink=events.append) as h,
        connected(h.url, "CP1") as first,
    ):
        await first.boot_until_accepted()
        assert await refused_status(h.url, "CP1", password="not-the-password-42") == 401
        impostor_left_it_alone = first._connection.close_code is None
        assert impostor_left_it_alone  # an impostor without the password changes nothing
        async with connected(h.url, "CP1") as second:
            await second.boot_until_accepted()
            await asyncio.wait_for(first._connection.wait_closed(), 5)
            assert first._connection.close_code == 4000
            assert h.csms.counters["duplicate_replaced"] == 1
            assert [e.kind for e in events if e.kind == "duplicate_identity"] == ["duplicate_identity"]
            assert (await h.csms.charger("CP1-1").set_current(10, lease_s=10)).ok
            assert second.rec.profiles[-1][0] == 1


async def test_a_thousand_failed_logins_do_not_keep_the_real_charger_out() -> None:
    config = fast_config(auth_failures_per_address=10, auth_failures_per_identity_address=3)
    async with running_csms([charge_point("CP1")], config) as h:
        statuses: list[int] = []

        async def attack(n: int) -> None:
            for _ in range(n):
                statuses.append(
                    await refused_status(
                        h.url, "CP1", password="guess-guess-guess-1", local_addr=("127.0.0.2", 0)
                    )
                )

        async with asyncio.TaskGroup() as tg:
            for _ in range(20):
                tg.create_task(attack(50))
        assert len(statuses) == 1000
        # Locked out before any password check (429), or told to retry while checks were queued (503).
        assert statuses.count(429) + statuses.count(503) >= 980
        assert set(statuses) <= {401, 429, 503}
        assert h.csms.counters["auth_failures"] <= 20
        assert h.csms.counters["rate_limited"] == statuses.count(429)
        async with connected(h.url, "CP1", local_addr=("127.0.0.1", 0)) as cp:
            await cp.boot_until_accepted()


async def test_a_login_storm_under_a_wrong_password_flood_admits_every_real_charger() -> None:
    # One worker, room for three waiting checks and checks of ~10 ms (4 MiB): most of the 30
    # chargers are told to come back.
    stored = hash_password(PASSWORD, log2_n=12, r=8, p=1)
    config = fast_config(
        handshake_timeout_s=5.0,
        login=LoginConfig(workers=1, max_waiting=3),
        auth_failures_per_address=10,
        auth_failures_per_identity_address=3,
    )
    chargers = [charge_point(f"CP{i}", password_hash=stored) for i in range(30)]
    async with running_csms(chargers, config) as h:
        refusals: list[int] = []
        retry_after_s: list[int] = []
        flood: list[int] = []

        async def real_charger(identity: str) -> None:
            while True:
                try:
                    async with connected(h.url, identity, local_addr=("127.0.0.1", 0)) as cp:
                        await cp.boot_until_accepted()
                        return
                except InvalidStatus as refused:
                    refusals.append(refused.response.status_code)
                    retry_after_s.append(int(refused.response.headers["Retry-After"]))
                    # A charger waits the Retry-After; a fifth of it keeps the test short.
                    await asyncio.sleep(retry_after_s[-1] / 5)

        async def wrong_password(i: int) -> int:
            return await refused_status(
                h.url, f"CP{i % 30}", password="guess-guess-guess-1", local_addr=("127.0.0.2", 0)
            )

        async def wrong_passwords() -> None:
            # Until locked out (a busy refusal checks nothing, so it counts for nothing), then more.
            while flood.count(401) < 10:
                flood.append(await wrong_password(len(flood)))
            after_lockout.extend([await wrong_password(i) for i in range(50)])

        after_lockout: list[int] = []
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            tg.create_task(wrong_passwords())
            for charger in chargers:
                tg.create_task(real_charger(charger.identity))
        assert retry_after_s, "the storm never filled the queue: the test tests nothing"
        assert set(refusals) == {503}
        assert all(r >= 1 for r in retry_after_s)
        assert h.csms.counters["logins_busy"] == len(retry_after_s) + flood.count(503)
        assert set(flood) <= {401, 503}
        assert after_lockout == [429] * 50  # locked out before any password check
        assert h.csms.counters["auth_failures"] == 10
        # Only the real chargers' passwords are remembered, and nothing is left waiting.
        assert h.csms.logins.cache_size == 30
        assert h.csms.logins.waiting == 0


async def come_up(url: str, identity: str) -> int:
    """Connects and boots as a charger does, retrying a 503 after its Retry-After (a tenth of it)."""
    refused = 0
    while True:
        try:
            async with connected(url, identity) as cp:
                await cp.boot_until_accepted()
                return refused
        except InvalidStatus as busy:
            if busy.response.status_code != 503:
                raise
            refused += 1
            await asyncio.sleep(int(busy.response.headers["Retry-After"]) / 10)


async def test_chargers_beyond_the_onboarding_bound_wait_and_are_told_to_retry() -> None:
    # Two slots, held until provisioned: a charger that connects and does not boot keeps its slot.
    config = fast_config(
        onboarding=OnboardingConfig(max_concurrent=2, hold_s=60.0), provision_unbooted_after_s=60.0
    )
    async with running_csms([charge_point(f"CP{i}") for i in range(4)], config) as h:
        async with connected(h.url, "CP0") as cp0, connected(h.url, "CP1"):
            with pytest.raises(InvalidStatus) as info:
                async with connected(h.url, "CP2"):
                    pass
            assert info.value.response.status_code == 503
            assert 2 <= int(info.value.response.headers["Retry-After"]) <= 6
            assert h.csms.counters["onboarding_busy"] == 1
            # CP1 still holds its slot: only CP0's provisioning can let CP2 in.
            waiting = asyncio.create_task(come_up(h.url, "CP2"))
            await cp0.boot_until_accepted()
            async with asyncio.timeout(10):
                await waiting
        # Closed connections free their slots.
        async with asyncio.timeout(10):
            await come_up(h.url, "CP3")
        assert h.csms.counters["auth_failures"] == 0


async def test_adoption_holds_unknown_chargers_as_pending() -> None:
    async with running_csms([], fast_config(adoption=True)) as h:
        async with connected(h.url, "NEW-1", password=None) as cp:
            assert await cp.boot() == "Pending"
            (pending,) = h.csms.pending()
            assert (pending.identity, pending.address, pending.connected) == ("NEW-1", "127.0.0.1", True)
            assert pending.vendor == "Test"
            with pytest.raises(Exception, match=r"SecurityError|not adopted"):
                await cp.call(call16.Authorize(id_tag="X"), suppress=False)
            assert h.csms.counters["pending_calls_refused"] == 1
            h.csms.adopt(charge_point("NEW-1"))
            await asyncio.wait_for(cp._connection.wait_closed(), 5)
            assert cp._connection.close_code == 1012
        assert h.csms.pending() == ()
        async with connected(h.url, "NEW-1") as cp:
            await cp.boot_until_accepted()


async def test_handshake_times_out() -> None:
    async with running_csms([charge_point("CP1")], fast_config(handshake_timeout_s=0.3)) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.csms.port)
        try:
            writer.write(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
            async with asyncio.timeout(10):
                assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()


# ----------------------------------------------------------------------------------------------- TLS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, subject: str, ca: str, extensions: str) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=directory)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory,
    )  # fmt: skip


def _ca(directory: Path, name: str) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-days", "2",
        "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_program("openssl")
    directory = tmp_path_factory.mktemp("pki")
    _ca(directory, "ca")
    _ca(directory, "rogue")
    _issue(directory, "server", "/CN=localhost", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _issue(directory, "cp-tls", "/CN=CP-TLS", "ca", "extendedKeyUsage=clientAuth\n")
    _issue(directory, "cp-other", "/CN=CP-OTHER", "ca", "extendedKeyUsage=clientAuth\n")
    _issue(directory, "cp-rogue", "/CN=CP-TLS", "rogue", "extendedKeyUsage=clientAuth\n")
    return directory


def _client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return context


def _tls_config(pki: Path, profile: SecurityProfile) -> Any:
    return fast_config(
        security_profile=profile,
        tls_cert_file=str(pki / "server.pem"),
        tls_key_file=str(pki / "server.key"),
        tls_ca_file=str(pki / "ca.pem") if profile is SecurityProfile.MUTUAL_TLS else None,
    )


async def test_profile_2_tls_with_basic_auth_and_no_tls_below_1_2(pki: Path) -> None:
    async with running_csms([charge_point("CP1")], _tls_config(pki, SecurityProfile.TLS_BASIC_AUTH)) as h:
        url = f"wss://127.0.0.1:{h.csms.port}/ocpp"
        async with connected(url, "CP1", ssl=_client_context(pki)) as cp:
            await cp.boot_until_accepted()
            transport = cp._connection.transport
            assert transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert (
            await refused_status(url, "CP1", password="wrong-password-1234", ssl=_client_context(pki)) == 401
        )

        tls12 = _client_context(pki)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        async with connected(url, "CP1", ssl=tls12) as cp:
            cipher = cp._connection.transport.get_extra_info("cipher")[0]
            assert cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")

        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(pki / "ca.pem"))
        old.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer TLS 1.0/1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point of this client
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        # The server answers a TLS 1.1 ClientHello with a protocol_version alert or a reset.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection("127.0.0.1", h.csms.port, ssl=old, server_hostname="localhost")
        # Control: the same raw connection with TLS 1.2 gets through the handshake.
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", h.csms.port, ssl=tls12, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()

        with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage)):
            async with connected(url.replace("wss:", "ws:"), "CP1", open_timeout=2):
                pass  # plain websocket against a TLS listener


async def test_profile_3_mutual_tls_identity_is_the_certificate_cn(pki: Path) -> None:
    chargers = [charge_point("CP-TLS", password_hash=None)]
    async with running_csms(chargers, _tls_config(pki, SecurityProfile.MUTUAL_TLS)) as h:
        url = f"wss://127.0.0.1:{h.csms.port}/ocpp"
        async with connected(url, "CP-TLS", password=None, ssl=_client_context(pki, "cp-tls")) as cp:
            await cp.boot_until_accepted()
        # A valid certificate for another charger may not take this identity.
        assert await refused_status(url, "CP-TLS", password=None, ssl=_client_context(pki, "cp-other")) == 401
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage)):
            async with connected(url, "CP-TLS", password=None, ssl=_client_context(pki, "cp-rogue")):
                pass
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage)):
            async with connected(url, "CP-TLS", password=None, ssl=_client_context(pki)):
                pass  # no client certificate at all
        assert h.csms.counters["auth_failures"] == 1
