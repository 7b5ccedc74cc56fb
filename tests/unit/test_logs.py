"""Structured logs: JSON lines with one event each, stdlib records routed through, journald priority."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from controller.logs import configure_logging

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_with_event_level_timestamp_and_context() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out, env={})
    log = structlog.get_logger("controller.test")
    log.info("charger_connected", charger_id="CP-01", subprotocol="ocpp1.6")
    log.warning("fuse_overload", fuse="main", line="L1", predicted_a=127.5)
    first, second = lines_of(out)
    assert first["event"] == "charger_connected"
    assert first["level"] == "info"
    assert first["charger_id"] == "CP-01"
    assert ISO_UTC.match(first["timestamp"])
    assert second == {**second, "event": "fuse_overload", "level": "warning", "predicted_a": 127.5}


def test_level_filters_our_events() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out, env={})
    log = structlog.get_logger()
    log.info("chatty")
    log.error("broken", reason="x")
    assert [e["event"] for e in lines_of(out)] == ["broken"]


def test_multiline_values_stay_on_one_line() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, env={})
    structlog.get_logger().info("odd\nevent", payload="a\nb\r\nc")
    (event,) = lines_of(out)
    assert event["event"] == "odd\nevent"
    assert event["payload"] == "a\nb\r\nc"


def test_exceptions_are_structured_on_one_line() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out, env={})
    try:
        raise ValueError("bad frame")
    except ValueError:
        structlog.get_logger().exception("frame_rejected", vendor="aidon")
    (event,) = lines_of(out)
    assert event["event"] == "frame_rejected"
    assert event["level"] == "error"
    assert event["exception"][0]["exc_type"] == "ValueError"


def test_stdlib_records_go_through_at_warning_and_above() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, env={})
    library = logging.getLogger("websockets.server")
    library.info("connection open")
    library.debug("frame received")
    library.warning("keepalive ping timeout %s", "CP-01")
    (event,) = lines_of(out)
    assert event["event"] == "keepalive ping timeout CP-01"
    assert event["level"] == "warning"
    assert event["logger"] == "websockets.server"
    assert ISO_UTC.match(event["timestamp"])


def test_configuring_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first, env={})
    configure_logging("info", "json", stream=second, env={})
    logging.getLogger("aiomqtt").error("disconnected")
    assert first.getvalue() == ""
    assert [e["event"] for e in lines_of(second)] == ["disconnected"]


def test_console_format_is_for_people() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out, env={})
    structlog.get_logger().info("meter_stale", meter="main")
    text = out.getvalue()
    assert "meter_stale" in text
    assert "meter=main" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_journal_stream_gets_syslog_priority_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with path.open("w", encoding="utf-8") as out:
        stat = os.fstat(out.fileno())
        configure_logging("info", "auto", stream=out, env={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
        log = structlog.get_logger()
        log.info("started")
        log.warning("meter_stale")
        log.error("failsafe")
        logging.getLogger("pymodbus").warning("retrying")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>", "<4>"]
    events = [json.loads(line[3:])["event"] for line in lines]
    assert events == ["started", "meter_stale", "failsafe", "retrying"]


def test_other_stream_is_not_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w", encoding="utf-8") as out:
        configure_logging("info", "auto", stream=out, env={"JOURNAL_STREAM": "1:2"})
        structlog.get_logger().info("started")
    assert json.loads(path.read_text(encoding="utf-8"))["event"] == "started"


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", "json", stream=io.StringIO(), env={})
