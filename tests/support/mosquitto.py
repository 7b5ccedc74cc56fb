"""A real mosquitto broker for tests: its own config, port and persistence under a temporary folder.

Persistence is on, so a broker restart keeps the queued QoS 1 messages of persistent sessions, as a
production broker would. Optionally a TLS listener that requires client certificates.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_tcp_port, require_program


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    server_cert: Path
    server_key: Path


class Mosquitto:
    def __init__(self, folder: Path, *, tls: TlsFiles | None = None) -> None:
        self.program = require_program("mosquitto", "/usr/sbin")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.tls_port = free_tcp_port() if tls is not None else None
        self.tls = tls
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            # As root, mosquitto would switch to the `mosquitto` user and lose the test's folders.
            "user root",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",
            "persistent_client_expiration 1d",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "allow_anonymous true",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        assert self._proc is None, "already running"
        self._proc = subprocess.Popen(
            [self.program, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err}{self._log_tail()}")
            if all(_accepts(p) for p in ports):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not accept connections{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def kill(self) -> None:
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def _log_tail(self) -> str:
        try:
            return "\n" + "\n".join(self.log.read_text().splitlines()[-20:])
        except OSError:
            return ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
