"""Uplink configuration, topics and reconnect backoff."""

from __future__ import annotations

import random
import ssl
from pathlib import Path

import pytest

from controller.uplink.backoff import Backoff
from controller.uplink.config import UplinkConfig, UplinkConfigError
from controller.uplink.connection import is_protocol_refusal
from controller.uplink.topics import Topics


def _config(**overrides: object) -> UplinkConfig:
    settings: dict[str, object] = {
        "url": "mqtts://broker.example.net",
        "site_id": "solbakken",
        "client_id": "box-1",
    }
    settings.update(overrides)
    return UplinkConfig(**settings)  # type: ignore[arg-type]


def test_broker_address_from_url() -> None:
    assert _config().broker() == _config(url="mqtts://broker.example.net:8883").broker()
    address = _config(url="mqtt://10.0.0.5").broker()
    assert (address.host, address.port, address.tls) == ("10.0.0.5", 1883, False)
    assert _config(url="mqtts://h:9999").broker().port == 9999


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://broker"}, "scheme"),
        ({"url": "mqtt://"}, "no host"),
        ({"url": "mqtt://h:99999"}, "(?i)port"),
        ({"site_id": "a/b"}, "site_id"),
        ({"site_id": "#"}, "site_id"),
        ({"client_id": ""}, "client_id"),
        ({"prefix": "garage/+/v1"}, "prefix"),
        ({"protocol": "4"}, "protocol"),
        ({"cert_file": Path("c.pem")}, "go together"),
        ({"window_rows": 0}, "window_rows"),
        ({"fuse_ratings_a": {"main": 0.0}}, "rating"),
    ],
)
def test_bad_configuration_is_a_clear_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UplinkConfigError, match=message):
        _config(**overrides)


def test_fuse_ratings_are_frozen() -> None:
    ratings = {"main": 125.0}
    config = _config(fuse_ratings_a=ratings)
    ratings["main"] = 400.0
    assert config.fuse_ratings_a["main"] == 125.0
    with pytest.raises(TypeError):
        config.fuse_ratings_a["main"] = 1.0  # type: ignore[index]


def test_tls_context_verifies_the_server() -> None:
    context = _config().tls_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert _config(url="mqtt://h").tls_context() is None


def test_missing_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UplinkConfigError, match="TLS files"):
        _config(ca_file=tmp_path / "missing.pem").tls_context()


def test_topics() -> None:
    topics = Topics("garage/v1", "solbakken")
    assert topics.status == "garage/v1/solbakken/status"
    assert topics.sessions == "garage/v1/solbakken/sessions"
    assert topics.site_telemetry == "garage/v1/solbakken/telemetry/site"
    assert topics.commands == "garage/v1/solbakken/cmd/+"
    assert topics.command_name("garage/v1/solbakken/cmd/site-limit") == "site-limit"
    assert topics.command_name("garage/v1/solbakken/cmd/") is None
    assert topics.command_name("garage/v1/solbakken/cmd/a/b") is None
    assert topics.command_name("garage/v1/other/cmd/site-limit") is None


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(12)]
    caps = [min(60.0, 2.0**n) for n in range(12)]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays[-5:]}) == 5  # jittered, not lockstep
    backoff.reset()
    assert 0.5 <= backoff.next_delay_s() <= 1.0
    with pytest.raises(ValueError, match="backoff"):
        Backoff(0.0, 1.0, random.Random())


def test_protocol_refusal_detection() -> None:
    import aiomqtt
    from aiomqtt.exceptions import MqttConnectError
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    refused = ReasonCode(PacketTypes.CONNACK, "Unsupported protocol version")
    assert is_protocol_refusal(MqttConnectError(refused))
    assert is_protocol_refusal(MqttConnectError(1))
    assert not is_protocol_refusal(MqttConnectError(ReasonCode(PacketTypes.CONNACK, "Not authorized")))
    assert not is_protocol_refusal(aiomqtt.MqttError("timeout"))
