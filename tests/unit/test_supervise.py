"""Back-off with jitter (pure) and the supervised runner (a real event loop, no sleeps
longer than a few milliseconds)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mailflow.supervise import backoff_delay, in_thread, supervised


def test_backoff_grows_doubles_and_is_capped() -> None:
    low = [backoff_delay(n, lambda: 0.0) for n in range(1, 9)]
    high = [backoff_delay(n, lambda: 0.999999) for n in range(1, 9)]
    assert low[:4] == [0.5, 1.0, 2.0, 4.0]
    assert high[0] == pytest.approx(1.0) and high[3] == pytest.approx(8.0)
    assert max(high) <= 60.0 and low[-1] == 30.0  # capped at 60: half fixed, half random


def test_backoff_jitter_spreads_within_the_step() -> None:
    values = [0.0, 0.25, 0.5, 0.75]
    delays = [backoff_delay(3, lambda v=v: v) for v in values]
    assert delays == [2.0, 2.5, 3.0, 3.5]  # step 4: from 2 up to (not including) 4


def test_backoff_custom_initial_and_cap() -> None:
    assert backoff_delay(10, lambda: 0.5, initial=0.1, cap=2.0) == pytest.approx(1.5)
    assert backoff_delay(0, lambda: 0.0, initial=0.2) == pytest.approx(0.1)


def test_supervised_restarts_a_failing_task_until_stopped() -> None:
    runs: list[int] = []
    failures: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def flaky() -> None:
            runs.append(1)
            if len(runs) >= 3:
                stop.set()
                return
            raise RuntimeError("boom")

        await asyncio.wait_for(
            supervised("flaky", flaky, stop, rand=lambda: 0.0, initial=0.01,
                       on_failure=lambda n, e: failures.append(f"{n}: {e}")), timeout=5)

    asyncio.run(main())
    assert len(runs) == 3 and failures == ["flaky: boom", "flaky: boom"]


def test_supervised_restarts_a_task_that_returns_early() -> None:
    runs: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def quits() -> None:
            runs.append(1)
            if len(runs) == 2:
                stop.set()

        await asyncio.wait_for(supervised("quits", quits, stop, rand=lambda: 0.0,
                                          initial=0.01), timeout=5)

    asyncio.run(main())
    assert len(runs) == 2


def test_in_thread_passes_results_and_exceptions_from_a_named_thread() -> None:
    names: list[str] = []

    def work() -> int:
        names.append(threading.current_thread().name)
        return 42

    def broken() -> None:
        raise ValueError("in the thread")

    async def main() -> None:
        assert await in_thread("imap:test", work) == 42
        with pytest.raises(ValueError, match="in the thread"):
            await in_thread("imap:test", broken)

    asyncio.run(main())
    assert names == ["imap:test"]
