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
from .errors import ClientClosed, CoterieError, DeadlineExceeded, LeaseLost
from .leases import RELEASE_BUDGET, AsyncLease
from .locks import AsyncElection, AsyncLeadership, AsyncLock, AsyncObserver, _Held
from .types import Bytesish, Fence, LeaderInfo, LeaseLike, WatchEvent, prefix_end, to_bytes

__all__ = ["Client", "Election", "Leadership", "Lease", "Lock", "Observer", "Watch"]

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
        fut: concurrent.futures.Future[T] | None = None
        try:
            # Submitting is inside the try: an interrupt (KeyboardInterrupt, a signal handler's
            # exception) that lands right after the coroutine started still cancels it.
            with self._lock:
                if self._stopping:
                    coro.close()
                    raise _closed_error()
                fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            return fut.result(wait)
        except concurrent.futures.CancelledError:
            raise _closed_error() from None  # the loop stopped under the call
        except concurrent.futures.TimeoutError:
            if fut is not None:
                fut.cancel()
            raise DeadlineExceeded(f"the call did not end within {wait:.1f} s on the client's loop "
                                   "thread; a write may or may not have been applied",
                                   retriable=False, unsafe=True) from None
        except BaseException:
            if fut is not None:
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
    and stops the client's loop thread. Concurrent calls share ``KV.Batch`` stream messages
    (``batching=False``: unary calls), as :class:`AsyncClient`'s.

    It is an :class:`AsyncClient` run on a private event loop in a daemon thread: each method submits
    the asyncio client's method there and waits for it (interrupting the wait, e.g. with Ctrl-C,
    cancels the call). Calls from many threads run concurrently on that loop.
    """

    def __init__(self, endpoints: str | Iterable[str], *, timeout: float = DEFAULT_TIMEOUT,
                 breaker_threshold: int = 3, breaker_cooldown: float = 2.0,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, batching: bool = True,
                 discover: bool = True) -> None:
        self._aio = AsyncClient(endpoints, timeout=timeout, breaker_threshold=breaker_threshold,
                                breaker_cooldown=breaker_cooldown, max_sessions=max_sessions,
                                batching=batching, discover=discover)
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

    # ---------------------------------------------------------------------------------- leases

    lease_ttl = _blocking(AsyncClient.lease_ttl)
    leases = _blocking(AsyncClient.leases)

    def grant_lease(self, ttl: float, *, timeout: float | None = None) -> Lease:
        """A new lease of ``ttl`` seconds, not kept alive (see :meth:`AsyncClient.grant_lease`);
        ``with lease:`` keeps it alive and revokes it on exit."""
        t = self.timeout if timeout is None else timeout
        lease = Lease(self, self._loop.run(self._aio.grant_lease(ttl, timeout=timeout), t + WAIT_SLACK))
        self._loop.run(_run_fn(lease._hook_lost), WAIT_SLACK)
        return lease

    def lease(self, ttl: float) -> Lease:
        """``with c.lease(ttl=10) as lease:`` grants a lease, keeps it alive in the background and
        revokes it on exit (:class:`Lease`)."""
        return Lease(self, self._aio.lease(ttl))

    def keep_alive(self, lease: LeaseLike) -> Lease:
        """Keep an existing lease alive in the background (see :meth:`AsyncClient.keep_alive`)."""
        if isinstance(lease, Lease):
            lease.keep_alive_once()
            lease.start_keepalive()
            return lease
        h = Lease(self, self._loop.run(self._aio.keep_alive(lease), self.timeout + WAIT_SLACK))
        self._loop.run(_run_fn(h._hook_lost), WAIT_SLACK)
        return h

    def revoke_lease(self, lease: LeaseLike, *, timeout: float | None = None) -> int:
        """Revoke a lease (a handle or an id), deleting its keys; how many keys.
        :class:`LeaseNotFound` if it does not exist."""
        if isinstance(lease, Lease):
            return lease.revoke(timeout=timeout)
        t = self.timeout if timeout is None else timeout
        return self._loop.run(self._aio.revoke_lease(lease, timeout=timeout), t + WAIT_SLACK)

    # ---------------------------------------------------------------------------------- locks, elections

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None) -> Lock:
        """``with c.lock("jobs/compactor", ttl=10, timeout=30) as lock:`` (see :class:`Lock`)."""
        return Lock(self, self._aio.lock(name, ttl=ttl, timeout=timeout))

    def try_lock(self, name: str, *, ttl: float = 10.0) -> Lock | None:
        """The lock NAME held (release it with ``lock.release()`` or ``with lock:``), or None if it
        is held or waited for now; does not wait."""
        al = self._loop.run(self._aio.try_lock(name, ttl=ttl), 2 * self.timeout + WAIT_SLACK)
        if al is None:
            return None
        lock = Lock(self, al)
        self._loop.run(_run_fn(lock._acquired), WAIT_SLACK)
        return lock

    def election(self, name: str) -> Election:
        """The election NAME (see :class:`Election`)."""
        return Election(self, self._aio.election(name))

    # ---------------------------------------------------------------------------------- membership

    member_list = _blocking(AsyncClient.member_list)
    member_add = _blocking(AsyncClient.member_add)
    member_remove = _blocking(AsyncClient.member_remove)
    member_promote = _blocking(AsyncClient.member_promote)
    transfer_leader = _blocking(AsyncClient.transfer_leader)
    snapshot = _blocking(AsyncClient.snapshot)
    members = _blocking(AsyncClient.members)

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


async def _run_fn(fn: Callable[[], T]) -> T:
    return fn()


class _SyncHeldBase:
    """What the blocking lease, lock and leadership handles share: a ``threading.Event`` ``lost`` set
    from the client's loop when the underlying handle is lost, and ``on_lost`` callbacks (run on the
    client's loop thread: they must not block)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.lost = threading.Event()
        """Set once lost (never for a release on purpose)."""
        self._lost_hooked = False

    def _async_lease(self) -> AsyncLease | None:
        raise NotImplementedError

    def _hook_lost(self) -> None:
        """Make the async lease set :attr:`lost` (once it exists); runs on the loop thread."""
        al = self._async_lease()
        if al is not None and not self._lost_hooked:
            self._lost_hooked = True
            al.on_lost(lambda _l: self.lost.set())

    def on_lost(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(self)`` once when lost (at once if already lost), on the client's loop
        thread: it must not block (hand work to another thread)."""
        al = self._async_lease()
        if al is None:
            raise CoterieError("not granted or held yet", retriable=False)
        self._client._loop.run(_run_fn(lambda: al.on_lost(lambda _l: callback(self))), WAIT_SLACK)

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until lost (or ``timeout`` seconds); whether it was lost."""
        return self.lost.wait(timeout)

    def _raise_if_lost_during(self, et: type[BaseException] | None, lost_before: bool, what: str) -> None:
        al = self._async_lease()
        if et is None and not lost_before and al is not None and self.lost.is_set():
            raise LeaseLost(f"{what} was lost during the with-block: {al.lost_reason}", lease_id=al.id)


class Lease(_SyncHeldBase):
    """A lease of a :class:`Client` (wrapping an :class:`AsyncLease` on the client's loop): ``id``,
    ``ttl`` (granted seconds), ``valid_until`` (monotonic), ``alive``, ``lost`` (a
    ``threading.Event``), :meth:`on_lost`. ``with lease:`` (or ``with c.lease(ttl) as lease:``) grants
    it if needed, keeps it alive in the background (every ttl/3, following the leader) and revokes it on
    exit; if it was lost during the block, the ``with`` raises :class:`LeaseLost` at its end (a thread
    cannot be cancelled: watch ``lease.lost`` / ``lease.alive`` in long bodies)."""

    def __init__(self, client: Client, aio: AsyncLease) -> None:
        super().__init__(client)
        self._al = aio
        self._lost_before = False

    def _async_lease(self) -> AsyncLease | None:
        return self._al

    def __repr__(self) -> str:
        return f"<Lease id={self.id} ttl={self.ttl} alive={self.alive}>"

    @property
    def id(self) -> int:
        return self._al.id

    @property
    def ttl(self) -> float:
        return self._al.ttl

    @property
    def valid_until(self) -> float:
        return self._al.valid_until

    @property
    def alive(self) -> bool:
        return self._al.alive

    @property
    def keepalives(self) -> int:
        return self._al.keepalives

    def keep_alive_once(self) -> float:
        """One answered keep-alive; the new ``valid_until`` (see :meth:`AsyncLease.keep_alive_once`)."""
        return self._client._loop.run(self._al.keep_alive_once(), self._client.timeout + WAIT_SLACK)

    def start_keepalive(self) -> None:
        self._client._loop.run(_run_fn(self._al.start_keepalive), WAIT_SLACK)

    def stop_keepalive(self) -> None:
        self._client._loop.run(self._al.stop_keepalive(), WAIT_SLACK)

    def revoke(self, *, timeout: float | None = None) -> int:
        """Revoke it (deleting its keys); how many keys. :class:`LeaseNotFound` if it is gone."""
        t = self._client.timeout if timeout is None else timeout
        return self._client._loop.run(self._al.revoke(timeout=timeout), t + WAIT_SLACK)

    def __enter__(self) -> Lease:
        async def opened() -> None:
            await self._al._open()
            self._hook_lost()

        self._client._loop.run(opened(), 2 * self._client.timeout + WAIT_SLACK)
        self._lost_before = self.lost.is_set()
        if self._lost_before:
            self._client._loop.run(self._al._release(), RELEASE_BUDGET + WAIT_SLACK)
            raise LeaseLost(f"lease {self.id} was lost before the with-block: {self._al.lost_reason}",
                            lease_id=self.id)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client._loop.run(self._al._release(), RELEASE_BUDGET + WAIT_SLACK)
        self._raise_if_lost_during(et, self._lost_before, f"lease {self.id}")


class _SyncHeld(_SyncHeldBase):
    """A blocking lock or leadership over an async one."""

    def __init__(self, client: Client, aio: _Held) -> None:
        super().__init__(client)
        self._ah = aio
        self._lost_before = False
        self._lease_view: Lease | None = None

    def _async_lease(self) -> AsyncLease | None:
        return self._ah.lease

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} token={self.token} alive={self.alive}>"

    @property
    def name(self) -> str:
        return self._ah.name

    @property
    def key(self) -> bytes:
        return self._ah.key

    @property
    def token(self) -> int:
        """The fencing token: the create_revision of the holder's key."""
        return self._ah.token

    @property
    def fence(self) -> Fence:
        return self._ah.fence

    @property
    def held(self) -> bool:
        return self._ah.held

    @property
    def alive(self) -> bool:
        return self._ah.alive

    @property
    def valid_until(self) -> float:
        return self._ah.valid_until

    @property
    def lease(self) -> Lease | None:
        """The lease the lock or leadership hangs on: one handle, whose ``lost`` is set on loss."""
        al = self._ah.lease
        if al is None:
            return None
        if self._lease_view is None or self._lease_view._al is not al:
            view = Lease(self._client, al)
            self._client._loop.run(_run_fn(view._hook_lost), WAIT_SLACK)
            self._lease_view = view
        return self._lease_view

    def release(self, *, timeout: float | None = None) -> None:
        """Delete the key and revoke the lease. Idempotent."""
        t = min(self._client.timeout, RELEASE_BUDGET) if timeout is None else timeout
        self._client._loop.run(self._ah.release(timeout=timeout), 2 * t + WAIT_SLACK)

    def _acquired(self) -> None:
        self._hook_lost()
        self._lost_before = self.lost.is_set()
        al = self._ah.lease
        if self._lost_before and al is not None:
            # Lost before the body starts: the body must not run believing it holds.
            raise LeaseLost(f"{self._ah._kind} {self.name!r} was lost before the with-block: "
                            f"{al.lost_reason}", lease_id=al.id)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client._loop.run(self._ah._release_quietly(), 2 * RELEASE_BUDGET + WAIT_SLACK)
        self._raise_if_lost_during(et, self._lost_before, f"{self._ah._kind} {self.name!r}")


class Lock(_SyncHeld):
    """A distributed lock of a :class:`Client` (see :class:`AsyncLock`): ``with c.lock(name, ttl=10,
    timeout=30) as lock:`` acquires (:class:`LockTimeout` after ``timeout``), releases on exit, and
    raises :class:`LeaseLost` at the end of the block if the lock was lost during it. ``token``,
    ``fence`` (or pass the lock as ``fence=``), ``valid_until``, ``alive``, ``lost`` (a
    ``threading.Event``), :meth:`on_lost`, :meth:`acquire`, :meth:`release`."""

    def __init__(self, client: Client, aio: AsyncLock) -> None:
        super().__init__(client, aio)
        self._al_lock = aio

    def acquire(self, *, timeout: float | None = None) -> Lock:
        """Wait (at most ``timeout``, default the lock's; None: for ever) until held."""
        t = self._al_lock.timeout if timeout is None else timeout

        async def acquired() -> None:
            await self._al_lock.acquire(timeout=t)
            self._acquired()

        self._client._loop.run(acquired(), None if t is None else t + RELEASE_BUDGET + WAIT_SLACK)
        return self

    def __enter__(self) -> Lock:
        if not self._ah.held:
            self.acquire()
        else:
            self._client._loop.run(_run_fn(self._acquired), WAIT_SLACK)
        return self


class Leadership(_SyncHeld):
    """The leadership won by :meth:`Election.campaign` (see :class:`AsyncLeadership`): ``token``,
    ``value``, ``fence``, ``valid_until``, ``alive``, ``lost``, :meth:`on_lost`, :meth:`proclaim`,
    :meth:`resign`; ``with leadership:`` resigns on exit."""

    def __init__(self, client: Client, aio: AsyncLeadership) -> None:
        super().__init__(client, aio)
        self._ald = aio

    @property
    def value(self) -> bytes:
        return self._ald.value

    def proclaim(self, value: Bytesish, *, timeout: float | None = None) -> None:
        t = self._client.timeout if timeout is None else timeout
        self._client._loop.run(self._ald.proclaim(value, timeout=timeout), t + WAIT_SLACK)

    def resign(self, *, timeout: float | None = None) -> None:
        self.release(timeout=timeout)

    def __enter__(self) -> Leadership:
        self._client._loop.run(_run_fn(self._acquired), WAIT_SLACK)
        return self


class Election:
    """The election NAME of a :class:`Client` (see :class:`AsyncElection`)."""

    def __init__(self, client: Client, aio: AsyncElection) -> None:
        self._client = client
        self._ae = aio
        self.name = aio.name
        self.leadership: Leadership | None = None

    def campaign(self, value: Bytesish, *, ttl: float = 10.0, timeout: float | None = None) -> Leadership:
        """Block until leader (at most ``timeout`` seconds: :class:`LockTimeout`); the
        :class:`Leadership`, kept alive until resigned or lost."""

        async def won() -> AsyncLeadership:
            return await self._ae.campaign(value, ttl=ttl, timeout=timeout)

        wait = None if timeout is None else timeout + RELEASE_BUDGET + WAIT_SLACK
        ald = self._client._loop.run(won(), wait)
        ld = self.leadership = Leadership(self._client, ald)
        self._client._loop.run(_run_fn(ld._acquired), WAIT_SLACK)
        return ld

    def resign(self, *, timeout: float | None = None) -> None:
        if self.leadership is not None:
            self.leadership.resign(timeout=timeout)

    def proclaim(self, value: Bytesish, *, timeout: float | None = None) -> None:
        if self.leadership is None:
            raise CoterieError(f"not the leader of {self.name!r}", retriable=False)
        self.leadership.proclaim(value, timeout=timeout)

    def leader(self) -> LeaderInfo | None:
        """The current leader (value, token, key, lease), or None."""
        return self._client._loop.run(self._ae.leader(), self._client.timeout + WAIT_SLACK)

    def observe(self) -> Observer:
        """An iterator of each new leader (:class:`LeaderInfo`), starting with the current one; close
        it with ``close()`` (from any thread) or use it as a context manager."""
        return Observer(self._client, self._ae.observe())


class Observer:
    """The blocking iterator over an :class:`AsyncObserver` (one thread iterates it)."""

    def __init__(self, client: Client, aio: AsyncObserver) -> None:
        self._client = client
        self._ao = aio

    def __iter__(self) -> Iterator[LeaderInfo]:
        return self

    def __next__(self) -> LeaderInfo:
        if self._ao._closed:
            raise StopIteration
        try:
            return self._client._loop.run(self._ao.__anext__(), None)
        except StopAsyncIteration:
            raise StopIteration from None
        except CoterieError:
            if self._client._closed or self._ao._closed:
                raise StopIteration from None
            raise

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._ao._closed:
            return
        with contextlib.suppress(CoterieError):
            self._client._loop.run(self._ao.aclose(), WAIT_SLACK)
