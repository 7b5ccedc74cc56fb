"""Structured logging for the daemon and `sitectl`: structlog, one event per line on standard error.

    configure_logging(settings.log.level, settings.log.format)
    log = structlog.get_logger(__name__)
    log.info("charger_connected", charger_id="CP-01", subprotocol="ocpp1.6")

- JSON lines (`{"event": ..., "level": ..., "timestamp": "...Z", ...context}`) when standard error is
  not a terminal, e.g. under systemd; a human console rendering on a terminal.
- When standard error is the journal (systemd sets $JOURNAL_STREAM to its device:inode), each line
  starts with a syslog priority prefix `<N>` that journald strips and stores as PRIORITY, so
  `journalctl -p warning -u sitectl` works.
- Records of the standard `logging` module (websockets, aiomqtt, pymodbus, asyncio) go through the
  same renderer at WARNING and above; they are chatty below that.

Logging configuration is process-wide by nature (structlog's and the `logging` root's); only the
composition root and CLI entry points call `configure_logging`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FOREIGN_LEVEL = logging.WARNING
"""Least severe level of records from libraries logging through the standard `logging` module."""

_SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installs, so configuring again replaces it."""


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    *,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Route structlog and standard `logging` to `stream` (default standard error).

    `level` applies to this project's structlog events; library records need WARNING. `env` is
    consulted for $JOURNAL_STREAM (default: the process environment).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    out = sys.stderr if stream is None else stream
    environ = os.environ if env is None else env
    console = fmt == "console" or (fmt == "auto" and _isatty(out))
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
    else:
        json_renderer = structlog.processors.JSONRenderer(sort_keys=False)
        renderer = _JournalPriority(json_renderer) if _is_journal(out, environ) else json_renderer

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    exceptions: list[Processor] = [] if console else [structlog.processors.dict_tracebacks]

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Loggers are module-level proxies; caching would pin them to the first configuration.
        cache_logger_on_first_use=False,
    )

    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(FOREIGN_LEVEL)


class _JournalPriority:
    """Prefix a rendered line with `<N>` (syslog priority), which journald turns into PRIORITY."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        level = str(event_dict.get("level", method_name)).lower()
        rendered: Any = self._inner(logger, method_name, event_dict)
        return f"<{_SYSLOG_PRIORITY.get(level, 6)}>{rendered}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _is_journal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream systemd connected (sd_journal_stream_fd(3))."""
    expected = env.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
