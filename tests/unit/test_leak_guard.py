"""The leak guards themselves: a guard that cannot fail protects nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).parent.parent / "conftest.py"


def test_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        textwrap.dedent(
            """
            import asyncio

            async def test_leaks() -> None:
                asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten")

            async def test_clean() -> None:
                task = asyncio.get_running_loop().create_task(asyncio.sleep(30))
                task.cancel()
            """
        )
    )
    result = pytester.runpytest(
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*leaked 1 asyncio task*forgotten*"])


def test_leaked_thread_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        textwrap.dedent(
            """
            import threading

            STOP = threading.Event()

            def test_leaks() -> None:
                threading.Thread(target=STOP.wait, args=(10,), name="forgotten-thread").start()

            def test_after() -> None:
                STOP.set()
            """
        )
    )
    result = pytester.runpytest(
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*leaked 1 thread*forgotten-thread*"])
