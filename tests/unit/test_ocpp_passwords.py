from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordError,
    generate_password,
    hash_password,
    parse_hash,
    verify_password,
)
from tests.support import sitectl_argv, subprocess_env

CHEAP = {"log2_n": 4, "r": 1, "p": 1}


def test_hash_verifies_only_the_same_password() -> None:
    stored = hash_password("a-good-password-16", **CHEAP)
    assert stored.startswith("scrypt$4$1$1$")
    assert verify_password("a-good-password-16", stored)
    assert not verify_password("a-good-password-17", stored)
    assert hash_password("a-good-password-16", **CHEAP) != stored  # salted


def test_default_cost_is_self_described() -> None:
    stored = hash_password("default-cost-password")
    log2_n, r, p, salt, key = parse_hash(stored)
    assert (log2_n, r, p, len(salt), len(key)) == (14, 8, 1, 16, 32)
    assert verify_password("default-cost-password", stored)


@pytest.mark.parametrize("length", [0, MIN_PASSWORD_LENGTH - 1, MAX_PASSWORD_LENGTH + 1])
def test_length_rules(length: int) -> None:
    with pytest.raises(PasswordError):
        hash_password("x" * length, **CHEAP)


@pytest.mark.parametrize(
    "stored", ["", "plain", "scrypt$4$1$1$@@@$AAAA", "bcrypt$1$2$3$4$5", "scrypt$99$1$1$AA$AA"]
)
def test_malformed_hash_never_verifies(stored: str) -> None:
    assert not verify_password("a-good-password-16", stored)


@given(st.integers(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH))
def test_generated_passwords_follow_the_rules(length: int) -> None:
    password = generate_password(length)
    assert len(password) == length
    assert ":" not in password
    assert password.isprintable()


def test_cli_hash_and_generate() -> None:
    env = subprocess_env()
    generated = subprocess.run(
        sitectl_argv("secret", "generate"), capture_output=True, text=True, env=env, check=True, timeout=60
    ).stdout.strip()
    assert MIN_PASSWORD_LENGTH <= len(generated) <= MAX_PASSWORD_LENGTH
    hashed = subprocess.run(
        sitectl_argv("secret", "hash"),
        input=generated + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert hashed.returncode == 0, hashed.stderr
    assert verify_password(generated, hashed.stdout.strip())
    for bad in ("short\n", "y" * 41 + "\n"):
        refused = subprocess.run(
            sitectl_argv("secret", "hash"), input=bad, capture_output=True, text=True, env=env, timeout=60
        )
        assert refused.returncode == 2
        assert "16-40" in refused.stderr
