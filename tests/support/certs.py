"""Test certificates made with the openssl CLI at test time (nothing is committed)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_program


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path  # a CA that signed nothing the broker uses
    other_client_cert: Path  # a client certificate from that other CA
    other_client_key: Path


def _run(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True)


def _ca(openssl: str, folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _run(openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _run(openssl, "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return key, cert


def _leaf(openssl: str, folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
    ext.write_text(extensions)
    _run(openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _run(openssl, "req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _run(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return cert, key


def make_pki(folder: Path) -> Pki:
    openssl = require_program("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(openssl, folder, "test-ca")
    other = _ca(openssl, folder, "other-ca")
    server = _leaf(
        openssl,
        folder,
        "broker",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client = _leaf(openssl, folder, "site-box", ca, "extendedKeyUsage=clientAuth\n")
    stranger = _leaf(openssl, folder, "stranger", other, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[1], server[0], server[1], client[0], client[1], other[1], stranger[0], stranger[1])
