"""The blocking :class:`Client` as a wrapper of :class:`AsyncClient` on a private loop thread, without
a cluster (an endpoint nothing listens on): its surface mirrors the asyncio one, typed errors pass
through, ``close()`` is idempotent from any thread and stops the loop thread, a dropped client stops
it too, and a wait that ends early (its bound, or an interrupt of the waiting thread) cancels the call
on the loop. Every wait is bounded."""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from coterie.client import AsyncClient, Client, CoterieError, DeadlineExceeded
from coterie.client.sync import _LoopThread
from tests.proc_cluster import free_ports


@pytest.fixture
def nowhere() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


@pytest.fixture
def loop_thread() -> Iterator[_LoopThread]:
    lt = _LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


def test_the_blocking_surface_mirrors_the_async_one(nowhere: str) -> None:
    public = {n for n in dir(AsyncClient(nowhere)) if not n.startswith("_")}
    with Client(nowhere) as c:
        assert public == {n for n in dir(c) if not n.startswith("_")}
        assert (c.endpoints, c.timeout) == ([nowhere], 10.0)
    public -= {"endpoints", "timeout"}
    # Handles (leases, locks, elections, watches) have blocking wrapper classes of their own.
    handles = {"watch", "watch_prefix", "lease", "lock", "election", "grant_lease", "keep_alive",
               "try_lock", "revoke_lease"}
    for name in sorted(public - {"close"} - handles):
        a, s = getattr(AsyncClient, name), getattr(Client, name)
        assert inspect.iscoroutinefunction(a), name
        assert inspect.signature(s) == inspect.signature(a), name
        assert s.__doc__ == a.__doc__ and s.__doc__, name
    for name in sorted(handles):
        assert (list(inspect.signature(getattr(Client, name)).parameters)
                == list(inspect.signature(getattr(AsyncClient, name)).parameters)), name


def test_errors_pass_through_and_close_is_idempotent(nowhere: str) -> None:
    c = Client(nowhere, timeout=0.5)
    thread = c._loop._thread
    assert thread.is_alive() and thread.daemon
    with pytest.raises(DeadlineExceeded) as ei:
        c.put("k", b"v")
    assert ei.value.retriable and "not applied" in str(ei.value)  # the write never got a session
    with pytest.raises(DeadlineExceeded):
        c.get("k")
    with pytest.raises(DeadlineExceeded):
        c.watch("k")
    c.close()
    assert not thread.is_alive()
    c.close()
    with pytest.raises(CoterieError, match="closed") as ci:
        c.get("k")
    assert not ci.value.retriable


def test_close_from_many_threads_at_once(nowhere: str) -> None:
    c = Client(nowhere, timeout=0.5)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            c.close()
        except BaseException as exc:
            errors.append(exc)

    ts = [threading.Thread(target=close, daemon=True) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in ts)
    assert not c._loop._thread.is_alive()


def test_calls_waiting_when_the_client_closes_fail(nowhere: str) -> None:
    c = Client(nowhere, timeout=20.0)
    out: list[BaseException] = []

    def get() -> None:
        try:
            c.get("k")
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=get, daemon=True)
    t.start()
    c.close()
    t.join(30)
    assert not t.is_alive() and len(out) == 1 and isinstance(out[0], CoterieError), out


def test_a_dropped_client_stops_its_loop_thread(nowhere: str) -> None:
    c = Client(nowhere)
    thread = c._loop._thread
    del c
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()


def test_a_wait_past_its_bound_cancels_the_call(loop_thread: _LoopThread) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(DeadlineExceeded, match="loop thread"):
        loop_thread.run(forever(), 0.05)
    assert cancelled.wait(30)


def test_interrupting_the_waiting_thread_cancels_the_call(loop_thread: _LoopThread) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    started, cancelled = threading.Event(), threading.Event()

    class Interrupted(Exception):
        pass

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    main = threading.main_thread().ident
    assert main is not None
    def interrupt() -> None:
        if started.wait(30):
            signal.pthread_kill(main, signal.SIGUSR1)

    timer = threading.Thread(target=interrupt, daemon=True)
    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        timer.start()
        with pytest.raises(Interrupted):
            loop_thread.run(forever(), 60)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert cancelled.wait(30)
