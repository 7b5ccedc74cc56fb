"""Helpers shared by tests: external programs, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
HAN_FRAMES = SHARED_DIR / "data" / "han" / "frames.jsonl"


def strict() -> bool:
    """CI sets SITECTL_TESTS_STRICT=1: a missing prerequisite is then a failure, not a skip."""
    return os.environ.get("SITECTL_TESTS_STRICT") == "1"


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if strict():
        pytest.fail(f"prerequisite missing: {what} (./bootstrap installs it)")
    pytest.skip(f"prerequisite missing: {what} (./bootstrap installs it)")


def require_program(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs]))
    require(path is not None, f"program {name}")
    assert path is not None
    return path


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sitectl_argv(*args: str) -> list[str]:
    """The command line that runs `sitectl` from this checkout, installed or not."""
    return [sys.executable, "-m", "controller.cli", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes that import this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env
