"""Hardware-in-the-loop tests: quiet the simulator's own logs (the daemon logs to its file)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _quiet_simulator_logs() -> Iterator[None]:
    # The garage and its chargers log every connector state change at debug level; thousands of
    # lines per run, captured by pytest for nothing. Warnings still show.
    config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**config)
