"""Password checks for charger logins, cheap for a charger that already proved its password.

A full check is a scrypt (drivers/ocpp/passwords.py: about 16 MiB and tens of milliseconds at the
production cost, several times that on a Raspberry Pi). After a power cut every charger of a garage
logs in at once, and the control loop, the meter reader and the dispatcher share the CPU with them.
So:

- a verified (identity, password) is remembered as an HMAC under a key drawn at start, compared in
  constant time and tied to the stored hash it was checked against (a changed hash drops it). A
  wrong password is never remembered and always pays the full cost;
- full checks run on a small dedicated pool, sized from the CPU count and a memory budget, so the
  memory scrypt takes is bounded however many chargers connect; its threads run at the lowest
  scheduling priority (SCHED_IDLE), so they use only CPU time the event loop does not want;
- a login that would wait longer than `max_wait_s` for a worker, or behind `max_waiting` others, is
  refused as busy with a retry delay (HTTP 503 + Retry-After): held, it would only time out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import structlog

from drivers.ocpp.config import LoginConfig
from drivers.ocpp.passwords import (
    DEFAULT_LOG2_N,
    DEFAULT_P,
    DEFAULT_R,
    PasswordError,
    parse_hash,
    verify_password,
)

log = structlog.get_logger("drivers.ocpp.logins")

# An estimate for the first checks, before any was timed (a production-cost scrypt on a slow box).
_FIRST_CHECK_S = 0.1


def scrypt_bytes(log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> int:
    """The memory one scrypt check takes (128 * n * r * p bytes)."""
    return 128 * (1 << log2_n) * r * p


def pool_size(cpus: int, memory_budget_bytes: int, check_bytes: int) -> int:
    """Workers for full checks: no more than the CPUs, no more than the memory budget holds, >= 1."""
    return max(1, min(cpus, memory_budget_bytes // max(1, check_bytes)))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LoginBusy(Exception):
    """Too many full checks waiting: the charger should come back after `retry_after_s`."""

    def __init__(self, retry_after_s: int, waiting: int) -> None:
        super().__init__(f"{waiting} password checks waiting; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.waiting = waiting


def _lowest_priority() -> None:
    # On Linux a scheduling policy is per thread; pid 0 is the calling thread.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        # Checks then compete with the event loop at normal priority: slower loop, still bounded.
        log.warning("ocpp.login_priority_not_lowered", error=str(exc))


class LoginVerifier:
    """Use as `async with LoginVerifier(config) as verifier:`; then `await verifier.verify(...)`."""

    def __init__(self, config: LoginConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.config = config or LoginConfig()
        self.workers = self.config.workers or pool_size(
            available_cpus(), self.config.memory_budget_bytes, scrypt_bytes()
        )
        self._rng = rng or random.Random()
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        self._waiting = 0
        self._check_s = _FIRST_CHECK_S  # moving average of one full check, wall-clock
        self.full_checks = 0
        self.cached_hits = 0
        self.busy_refusals = 0

    async def __aenter__(self) -> LoginVerifier:
        self._executor = ThreadPoolExecutor(
            self.workers, thread_name_prefix="ocpp-login", initializer=_lowest_priority
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Running checks end on their own within one scrypt; nothing waits for them any more.
            executor.shutdown(wait=False, cancel_futures=True)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def cache_size(self) -> int:
        return len(self._verified)

    def _token(self, identity: str, password: str) -> bytes:
        message = b"\0".join(s.encode("utf-8", "surrogatepass") for s in (identity, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def verify(self, identity: str, password: str, stored: str) -> bool:
        """True if `password` is the one `stored` was made from; raises LoginBusy when saturated."""
        token = self._token(identity, password)
        cached = self._verified.get(identity)
        if cached is not None and cached[0] == stored and hmac.compare_digest(cached[1], token):
            self._verified.move_to_end(identity)
            self.cached_hits += 1
            return True
        if self._executor is None:
            raise RuntimeError("the login verifier is not running")
        if _cheap(stored):
            # Microseconds: a thread hop would cost more, and an idle-priority thread can wait
            # long on a busy machine (simulated garages use such hashes).
            ok = verify_password(password, stored)
            self.full_checks += 1
            if ok:
                self._remember(identity, stored, token)
            return ok
        expected_wait_s = self._waiting // self.workers * self._check_s
        if self._waiting >= self.config.max_waiting or expected_wait_s > self.config.max_wait_s:
            self.busy_refusals += 1
            # Spread the retries over the time the queue needs to drain, so that they don't all
            # come back in the same second.
            drain_s = max(1.0, (self._waiting / self.workers) * self._check_s)
            raise LoginBusy(round(drain_s * (1.0 + self._rng.random())), self._waiting)
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            ok, took_s = await loop.run_in_executor(self._executor, _timed_verify, password, stored)
        finally:
            self._waiting -= 1
        self._check_s = 0.8 * self._check_s + 0.2 * took_s
        self.full_checks += 1
        if ok:
            self._remember(identity, stored, token)
        return ok

    def _remember(self, identity: str, stored: str, token: bytes) -> None:
        self._verified[identity] = (stored, token)
        self._verified.move_to_end(identity)
        while len(self._verified) > self.config.cache_entries:
            self._verified.popitem(last=False)


def _cheap(stored: str) -> bool:
    """A hash whose check takes well under a millisecond (at most 64 KiB of scrypt memory)."""
    try:
        log2_n, r, p, _salt, _key = parse_hash(stored)
    except PasswordError:
        return True  # verify_password refuses it without deriving anything
    return scrypt_bytes(log2_n, r, p) <= 64 * 1024


def _timed_verify(password: str, stored: str) -> tuple[bool, float]:
    started = time.perf_counter()
    ok = verify_password(password, stored)
    return ok, time.perf_counter() - started
