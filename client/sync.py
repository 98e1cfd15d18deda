"""The blocking client: a thin wrapper over :class:`~coterie.client.AsyncClient`. See :class:`Client`.

Each KV, status and membership method of :class:`Client` is the :class:`AsyncClient` method of the
same name run on a private event loop that the client owns in a daemon thread (:func:`_blocking` makes
one from the other, keeping its signature and docstring), and a :class:`Watch` wraps an
:class:`AsyncWatch` on that loop, so the two clients cannot drift apart: one retry loop, one session
pool, one watch implementation. The cost is one thread hop per call (tens of microseconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._call import DEFAULT_TIMEOUT
from ._router import Router
from ._sessions import DEFAULT_MAX_SESSIONS, SessionPool, SessionState
from .aio import AsyncClient, AsyncWatch
from .errors import ClientClosed, CoterieError, DeadlineExceeded
from .types import Bytesish, WatchEvent, prefix_end, to_bytes

__all__ = ["Client", "Watch"]

P = ParamSpec("P")
T = TypeVar("T")

WAIT_SLACK = 5.0
"""How much longer than a call's own timeout a caller waits for it on the loop thread before it
cancels it: a safety net only, since every call ends itself by its deadline."""


def _closed_error() -> ClientClosed:
    return ClientClosed()


class _LoopThread:
    """A private asyncio event loop running in a daemon thread. :meth:`run` submits a coroutine to it
    from any other thread and waits for its outcome; :meth:`stop` (idempotent) ends the loop, cancels
    what still runs on it (its waiters get "the client is closed") and joins the thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="coterie-client-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            left = asyncio.all_tasks(self.loop)
            for task in left:
                task.cancel()
            if left:
                self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], wait: float | None) -> T:
        """The result of ``coro`` run on the loop, waiting at most ``wait`` seconds (None: no bound).
        If the wait ends otherwise (its bound, KeyboardInterrupt in this thread), the coroutine is
        cancelled on the loop."""
        with self._lock:
            if self._stopping:
                coro.close()
                raise _closed_error()
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(wait)
        except concurrent.futures.CancelledError:
            raise _closed_error() from None  # the loop stopped under the call
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise DeadlineExceeded(f"the call did not end within {wait:.1f} s on the client's loop "
                                   "thread; a write may or may not have been applied",
                                   retriable=False, unsafe=True) from None
        except BaseException:
            fut.cancel()
            raise

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()


def _blocking(method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
              ) -> Callable[Concatenate[Client, P], T]:
    """The blocking twin of an :class:`AsyncClient` method: same parameters, result and errors (and
    docstring); the caller waits for the call's ``timeout`` (default: the client's) plus
    :data:`WAIT_SLACK`."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        t = kwargs.get("timeout")
        wait = (t if isinstance(t, int | float) else self._aio.timeout) + WAIT_SLACK
        return self._loop.run(method(self._aio, *args, **kwargs), wait)

    return call


class Client:
    """A blocking coterie client: ``with Client("h:p,h:p,h:p") as c: c.put("k", b"v")``.

    It finds the leader itself, retries retriable failures with exponential back-off and full jitter
    within ``timeout`` seconds per call, skips an endpoint that keeps failing for ``breaker_cooldown``
    seconds, and makes every write exactly-once through a session (a write retried after a timeout or
    a leader change is applied once). Safe to share between threads, and concurrent writes do not wait
    for each other: each write takes a session of its own from the client's pool for the whole call
    (all its retries carry that session's next seq), opening one with Session.Open when none is idle,
    up to ``max_sessions`` (beyond that a write waits, within its timeout, for one to be handed back);
    see :class:`~coterie.client._sessions.SessionPool`. Idle sessions are not kept alive: one idle for
    half its TTL is dropped and replaced when needed. ``close()`` closes every session (best effort)
    and stops the client's loop thread.

    It is an :class:`AsyncClient` run on a private event loop in a daemon thread: each method submits
    the asyncio client's method there and waits for it (interrupting the wait, e.g. with Ctrl-C,
    cancels the call). Calls from many threads run concurrently on that loop.
    """

    def __init__(self, endpoints: str | Iterable[str], *, timeout: float = DEFAULT_TIMEOUT,
                 breaker_threshold: int = 3, breaker_cooldown: float = 2.0,
                 max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        self._aio = AsyncClient(endpoints, timeout=timeout, breaker_threshold=breaker_threshold,
                                breaker_cooldown=breaker_cooldown, max_sessions=max_sessions)
        self.endpoints = self._aio.endpoints
        self._loop = _LoopThread()
        self._close_lock = threading.Lock()
        self._closed = False
        # A client dropped without close() does not leave its thread behind.
        self._finalizer = weakref.finalize(self, self._loop.stop)
        self._finalizer.atexit = False

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds."""
        return self._aio.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._aio.timeout = value

    # ---------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the open watches, every session of the pool (best effort, at most ``min(timeout,
        5)`` seconds in all; a session not closed expires by itself) and the channels, then stop the
        loop thread. Idempotent and thread-safe. Calls still running or waiting for a session fail."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._loop.run(self._aio.close(), min(self.timeout, 5.0) + WAIT_SLACK)
            finally:
                self._finalizer()

    # ---------------------------------------------------------------------------------- KV

    get = _blocking(AsyncClient.get)
    get_range = _blocking(AsyncClient.get_range)
    get_prefix = _blocking(AsyncClient.get_prefix)
    put = _blocking(AsyncClient.put)
    delete = _blocking(AsyncClient.delete)
    delete_range = _blocking(AsyncClient.delete_range)
    delete_prefix = _blocking(AsyncClient.delete_prefix)
    txn = _blocking(AsyncClient.txn)
    compact = _blocking(AsyncClient.compact)
    status = _blocking(AsyncClient.status)

    # ---------------------------------------------------------------------------------- membership

    member_list = _blocking(AsyncClient.member_list)
    member_add = _blocking(AsyncClient.member_add)
    member_remove = _blocking(AsyncClient.member_remove)
    member_promote = _blocking(AsyncClient.member_promote)

    # ---------------------------------------------------------------------------------- watches

    def watch(self, key: Bytesish, range_end: Bytesish | None = None, *, start_revision: int = 0,
              prev_kv: bool = False) -> Watch:
        """Changes to ``key`` (or ``[key, range_end)``) from ``start_revision`` (0: from now on), as
        a :class:`Watch`: an iterator of :class:`WatchEvent` in revision order, each change exactly
        once, all changes of one revision together. The watch is established when this returns (a
        watch from now sees every change after that). It survives member failures: it resumes on
        another member with no gaps or duplicates. A start below the compaction point raises
        :class:`Compacted` (``compact_revision``: the oldest watchable revision) from the first
        ``next()``. Close it with ``.close()`` (from any thread) or use it as a context manager."""

        async def opened() -> AsyncWatch:
            aw = self._aio.watch(key, range_end, start_revision=start_revision, prev_kv=prev_kv)
            return await aw.__aenter__()  # connects; on failure the watch is finished

        return Watch(self, self._loop.run(opened(), self.timeout + WAIT_SLACK))

    def watch_prefix(self, prefix: Bytesish, *, start_revision: int = 0, prev_kv: bool = False) -> Watch:
        """:meth:`watch` of every key starting with ``prefix``."""
        p = to_bytes(prefix, "prefix")
        return self.watch(p, prefix_end(p), start_revision=start_revision, prev_kv=prev_kv)

    # ---------------------------------------------------------------------------------- internals

    _invoke = _blocking(AsyncClient._invoke)
    """:meth:`AsyncClient._invoke` (for tests that send a request numbered by hand)."""

    @property
    def _router(self) -> Router:
        return self._aio._router

    @property
    def _pool(self) -> SessionPool:
        return self._aio._pool

    @property
    def _session(self) -> SessionState:
        """The session the next write would use (for tests that number a request by hand; not
        thread-safe), or an unopened one."""
        return self._aio._session


class Watch:
    """An open watch: iterate it for :class:`WatchEvent` in revision order. It wraps an
    :class:`AsyncWatch` on the client's loop: each ``next()`` waits there for the next event.

    Invariants: every change in the range from the start revision on is yielded exactly once and in
    revision order, across member failures (the stream is re-created on another member from the last
    complete revision, :class:`~coterie.client._watch.WatchState`); all changes of one revision (one
    txn) are yielded together before any later one. ``close()`` (from any thread, also while another
    thread is blocked in ``next()``) ends the iteration at once. A terminal error (:class:`Compacted`,
    :class:`InvalidArgument`, or :class:`DeadlineExceeded` when no member could be reached within the
    client's ``timeout``) is raised once; the iteration then ends. One thread iterates a watch.

    :attr:`endpoint` is the member it currently streams from; :attr:`revision` how far it has got.
    """

    def __init__(self, client: Client, watch: AsyncWatch) -> None:
        self._client = client  # keeps the client, hence its loop thread, alive while the watch is
        self._aw = watch

    @property
    def endpoint(self) -> str:
        """The member the watch currently streams from."""
        return self._aw.endpoint

    @property
    def reconnects(self) -> int:
        """How many times the stream was re-created on a member after a failure."""
        return self._aw.reconnects

    @property
    def revision(self) -> int:
        """The revision up to which every change has been yielded (for a watch from "now": the
        revision it was created at, until the first event); re-watching from ``revision + 1``
        continues without gaps or duplicates."""
        return self._aw.revision

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        aw = self._aw
        if aw._closed or aw._finished:
            raise StopIteration
        if aw._buffer:  # received already: no trip to the loop (only this thread takes from it)
            return aw._buffer.popleft()
        try:
            return self._client._loop.run(aw.__anext__(), None)
        except StopAsyncIteration:
            raise StopIteration from None
        except CoterieError:
            if self._client._closed:  # the client closed its watches and stopped its loop
                raise StopIteration from None
            raise

    def close(self) -> None:
        """End the watch (idempotent, thread-safe): a blocked ``next()`` raises StopIteration."""
        if self._aw._closed:
            return
        with contextlib.suppress(CoterieError):  # the client is closed, and closed its watches
            self._client._loop.run(self._aw.aclose(), WAIT_SLACK)
