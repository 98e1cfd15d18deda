"""Locks and elections of an :class:`~coterie.client.AsyncClient`, on leases and keys (etcd's
``concurrency.Mutex`` and ``concurrency.Election`` algorithms).

A contender for NAME grants a lease (kept alive while it waits and while it holds), puts its key
``coterie/locks/<NAME>/<lease id as 16 hex digits>`` (elections: ``coterie/elections/...``) attached to
that lease, and then waits until no contender key with a smaller create_revision remains, watching
only its immediate predecessor's key for deletion (so a release wakes one waiter, not all: no
thundering herd) and re-reading the prefix after each deletion. The order is the order of the puts
(FIFO), and the holder's fencing token is its key's create_revision, strictly increasing across the
holders of NAME; the cluster fences writes with it (``fence=lock``), as the oldest key under the
prefix. A holder whose lease is lost no longer holds (the lease's loss semantics apply: ``lost``,
``on_lost``, and ``async with`` cancels the body and raises :class:`LeaseLost`).

Names: one name must not be a path prefix of another in use (``a`` and ``a/b``): the server's fence
takes the oldest key under ``coterie/locks/a/``, which includes ``a/b``'s keys.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _codec
from ._lease import (
    ELECTION_PREFIX,
    LOCK_PREFIX,
    contender_key,
    contenders,
    is_contender,
    name_prefix,
    predecessor,
)
from .errors import CoterieError, LeaseLost, LeaseNotFound, LockTimeout
from .leases import RELEASE_BUDGET, AsyncLease, _BodyGuard, _shielded
from .types import Bytesish, Fence, KeyValue, LeaderInfo, Op, PutResult, RangeResult, prefix_end, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient, AsyncWatch

__all__ = ["AsyncElection", "AsyncLeadership", "AsyncLock", "AsyncObserver"]


async def _range(client: AsyncClient, prefix: bytes) -> RangeResult:
    req = _codec.range_request(prefix, prefix_end(prefix))
    return _codec.range_from_pb(await client._invoke("kv", "Range", req, write=False))


def _leader_of(prefix: bytes, kvs: list[KeyValue]) -> LeaderInfo | None:
    cs = contenders(prefix, kvs)
    if not cs:
        return None
    kv = cs[0]
    return LeaderInfo(kv.value, kv.create_revision, kv.key, kv.lease)


class _Held:
    """What a lock and a leadership share: a contender key under ``prefix`` attached to a kept-alive
    lease; held once no older contender remains, until released or the lease is lost."""

    _kind = "lock"

    def __init__(self, client: AsyncClient, name: str, prefix: bytes, *, ttl: float) -> None:
        self._client = client
        self.name = name
        self.prefix = prefix
        self.ttl = ttl
        self.key = b""
        self.token = 0
        """The create_revision of the holder's key: its fencing token (0 until held)."""
        self.lease: AsyncLease | None = None
        self._held = False
        self._guards: list[_BodyGuard] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} token={self.token} alive={self.alive}>"

    # ------------------------------------------------------------------------------------ state

    @property
    def held(self) -> bool:
        """Acquired and not released (it may be lost: see :attr:`alive`)."""
        return self._held

    @property
    def alive(self) -> bool:
        """Held and its lease alive (``valid_until`` not passed, not lost)."""
        return self._held and self.lease is not None and self.lease.alive

    @property
    def valid_until(self) -> float:
        """The lease's ``valid_until``: until when (monotonic) the holder can trust it holds."""
        return self.lease.valid_until if self.lease is not None else float("-inf")

    @property
    def fence(self) -> Fence:
        """The :class:`Fence` of this holder (``fence=`` of a write takes the lock itself too)."""
        if not self.token:
            raise CoterieError(f"the {self._kind} {self.name!r} is not held", retriable=False)
        return Fence(self.prefix, self.token)

    @property
    def lost(self) -> asyncio.Event:
        """Set once the lease is lost."""
        if self.lease is None:
            raise CoterieError(f"the {self._kind} {self.name!r} was never held", retriable=False)
        return self.lease.lost

    def on_lost(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(self)`` once when the lease is lost (on the client's loop; must not block)."""
        if self.lease is None:
            raise CoterieError(f"the {self._kind} {self.name!r} was never held", retriable=False)
        self.lease.on_lost(lambda _lease: callback(self))

    async def wait_lost(self) -> None:
        await self.lost.wait()

    # ------------------------------------------------------------------------------------ acquiring

    async def _enqueue(self, value: bytes) -> RangeResult:
        """Grant and keep alive a lease, then put the contender key attached to it and read the
        contenders, in one transaction (one round trip, as etcd's Mutex does): the answer is the
        prefix as of the put's revision."""
        self._held = False
        self.token = 0
        lease = self.lease = AsyncLease(self._client, ttl=self.ttl)
        await lease._open()
        self.key = contender_key(self.prefix, lease.id)
        # The key is new (so is the lease): its create_revision is the put's revision (a retried txn
        # is applied once and answers the first time's result).
        r = await self._client.txn(success=[Op.put(self.key, value, lease=lease.id),
                                            Op.get(self.prefix, prefix=True)])
        put, contenders_now = r.results
        assert isinstance(put, PutResult) and isinstance(contenders_now, RangeResult)
        self.token = put.revision
        return contenders_now

    async def _wait_turn(self, deadline: float | None, first: RangeResult | None = None) -> None:
        """Return once no contender older than this one remains; :class:`LockTimeout` at
        ``deadline``, :class:`LeaseLost` if the lease is lost or the key disappears. ``first``: the
        contenders as read by the enqueueing transaction (saves a read)."""
        cl = self._client
        assert self.lease is not None
        while True:
            r = first if first is not None else await _range(cl, self.prefix)
            first = None
            mine = next((kv for kv in r.kvs if kv.key == self.key), None)
            if mine is None:
                raise LeaseLost(f"the {self._kind} {self.name!r}'s key {self.key!r} is gone (its lease "
                                "expired or was revoked)", lease_id=self.lease.id)
            self.token = mine.create_revision
            pred = predecessor(self.prefix, r.kvs, mine.create_revision)
            if pred is None:
                return
            await self._wait_deleted(pred.key, r.revision + 1, deadline)

    async def _wait_deleted(self, key: bytes, from_revision: int, deadline: float | None) -> None:
        cl = self._client
        assert self.lease is not None
        w = cl.watch(key, start_revision=from_revision)

        async def deleted() -> None:
            async for ev in w:
                if ev.type == "DELETE":
                    return

        watcher = asyncio.ensure_future(deleted())
        lost = asyncio.ensure_future(self.lease.wait_lost())
        try:
            left = None if deadline is None else max(0.0, deadline - cl._clock())
            done, _ = await asyncio.wait({watcher, lost}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            lost.cancel()
            await w.aclose()
        if watcher in done:
            watcher.result()  # a watch error
            return
        if lost in done:
            raise self.lease._lost_error()
        raise LockTimeout(f"the {self._kind} {self.name!r} was not acquired within the timeout "
                          f"(waiting behind {key!r})", name=self.name)

    async def _acquire(self, value: bytes, timeout: float | None) -> None:
        if self._held:
            raise CoterieError(f"the {self._kind} {self.name!r} is already held", retriable=False)
        deadline = None if timeout is None else self._client._clock() + timeout
        try:
            if deadline is None:
                first = await self._enqueue(value)
            else:
                try:
                    first = await asyncio.wait_for(self._enqueue(value),
                                                   max(0.0, deadline - self._client._clock()))
                except TimeoutError:
                    raise LockTimeout(f"the {self._kind} {self.name!r} was not acquired within "
                                      f"{timeout} s", name=self.name) from None
            await self._wait_turn(deadline, first)
            assert self.lease is not None
            self.lease.check()  # lost while acquiring: never report the lock held
        except BaseException:
            await _shielded(self._abandon())
            raise
        self._held = True

    async def _try(self, value: bytes = b"") -> bool:
        """Acquire if no older contender exists now; else remove the contender again."""
        try:
            r = await self._enqueue(value)
            mine = next((kv for kv in r.kvs if kv.key == self.key), None)
            ok = mine is not None and predecessor(self.prefix, r.kvs, mine.create_revision) is None
            if mine is not None:
                self.token = mine.create_revision
        except BaseException:
            await _shielded(self._abandon())
            raise
        if not ok:
            await _shielded(self._abandon())
            return False
        assert self.lease is not None
        if not self.lease.alive:  # lost while acquiring: never report the lock held
            err = self.lease._lost_error()
            await _shielded(self._abandon())
            raise err
        self._held = True
        return True

    async def _abandon(self) -> None:
        """Best effort: revoke the lease (which deletes the key)."""
        self._held = False
        self.token = 0
        if self.lease is not None and self.lease.id:
            await self.lease._release()

    # ------------------------------------------------------------------------------------ releasing

    async def release(self, *, timeout: float | None = None) -> None:
        """Revoke the lease, which deletes the key with it in one revision (a lease already gone is
        fine). Idempotent."""
        if self.lease is None or self.lease.released:
            self._held = False
            return
        self._held = False
        t = min(self._client.timeout, RELEASE_BUDGET) if timeout is None else timeout
        with contextlib.suppress(LeaseNotFound):
            await self.lease.revoke(timeout=t)

    async def _release_quietly(self) -> None:
        with contextlib.suppress(CoterieError):
            await self.release()

    async def _exit(self, et: type[BaseException] | None, ev: BaseException | None) -> bool:
        guard = self._guards.pop()
        if self.lease is not None and guard in self.lease._guards:
            self.lease._guards.remove(guard)
        lost = await guard.exit(et)
        await _shielded(self._release_quietly())
        if lost is not None:
            raise lost from ev
        return False

    def _guard(self) -> None:
        assert self.lease is not None
        guard = _BodyGuard(self.lease, f"{self._kind} {self.name!r}")
        self._guards.append(guard)
        self.lease._guards.append(guard)


class AsyncLock(_Held):
    """A distributed lock (fair, FIFO; see the module docstring). ``async with c.lock(name) as lock:``
    acquires (waiting at most ``timeout`` seconds: :class:`LockTimeout`), runs the body (cancelled if
    the lock is lost: then :class:`LeaseLost`), and releases on exit. ``lock.token`` (fencing token),
    ``lock.fence``, ``lock.valid_until``, ``lock.alive``, ``lock.lost`` / ``on_lost`` / ``wait_lost``.
    Also ``await lock.acquire()`` / ``await lock.release()``."""

    def __init__(self, client: AsyncClient, name: str, *, ttl: float = 10.0,
                 timeout: float | None = None) -> None:
        super().__init__(client, name, name_prefix(LOCK_PREFIX, name), ttl=ttl)
        self.timeout = timeout

    async def acquire(self, *, timeout: float | None = None) -> AsyncLock:
        """Wait (at most ``timeout``, default the lock's) until held; :class:`LockTimeout` otherwise
        (the contender's key and lease are removed again)."""
        await self._acquire(b"", self.timeout if timeout is None else timeout)
        return self

    async def __aenter__(self) -> AsyncLock:
        if not self._held:
            await self._acquire(b"", self.timeout)
        self._guard()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> bool:
        return await self._exit(et, ev)


class AsyncLeadership(_Held):
    """The leadership won by :meth:`AsyncElection.campaign`: ``token`` (create_revision, strictly
    increasing across leaders), ``value``, ``valid_until``, ``alive``, ``lost`` / ``on_lost``; usable as
    ``fence=``. ``async with leadership:`` runs the body cancelled on loss (:class:`LeaseLost`) and
    resigns on exit."""

    _kind = "leadership"

    def __init__(self, client: AsyncClient, name: str, prefix: bytes, *, ttl: float) -> None:
        super().__init__(client, name, prefix, ttl=ttl)
        self.value = b""

    async def proclaim(self, value: Bytesish, *, timeout: float | None = None) -> None:
        """Change the leader's value, fenced: :class:`FenceRejected` if this is no longer the leader."""
        if not self._held or self.lease is None:
            raise CoterieError(f"not the leader of {self.name!r}", retriable=False)
        v = to_bytes(value, "value")
        await self._client.put(self.key, v, lease=self.lease.id, fence=self, prev_kv=False, timeout=timeout)
        self.value = v

    async def resign(self, *, timeout: float | None = None) -> None:
        """Give up the leadership (delete the key, revoke the lease); the next contender leads."""
        await self.release(timeout=timeout)

    async def __aenter__(self) -> AsyncLeadership:
        if not self._held:
            raise CoterieError(f"not the leader of {self.name!r}", retriable=False)
        self._guard()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> bool:
        return await self._exit(et, ev)


class AsyncElection:
    """The election NAME (keys under ``coterie/elections/<NAME>/``): :meth:`campaign`, :meth:`leader`,
    :meth:`observe`, :meth:`resign`, :meth:`proclaim`."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name
        self.prefix = name_prefix(ELECTION_PREFIX, name)
        self.leadership: AsyncLeadership | None = None
        """The leadership this object won last (None before a campaign)."""

    async def campaign(self, value: Bytesish, *, ttl: float = 10.0,
                       timeout: float | None = None) -> AsyncLeadership:
        """Wait until this contender leads (FIFO among contenders; at most ``timeout`` seconds:
        :class:`LockTimeout`); the :class:`AsyncLeadership`, kept alive until resigned or lost."""
        ld = AsyncLeadership(self._client, self.name, self.prefix, ttl=ttl)
        ld.value = to_bytes(value, "value")
        await ld._acquire(ld.value, timeout)
        self.leadership = ld
        return ld

    async def resign(self, *, timeout: float | None = None) -> None:
        """Resign the leadership won by this object (if any)."""
        if self.leadership is not None:
            await self.leadership.resign(timeout=timeout)

    async def proclaim(self, value: Bytesish, *, timeout: float | None = None) -> None:
        """Change the value of the leadership won by this object (fenced)."""
        if self.leadership is None:
            raise CoterieError(f"not the leader of {self.name!r}", retriable=False)
        await self.leadership.proclaim(value, timeout=timeout)

    async def leader(self) -> LeaderInfo | None:
        """The current leader (value, token, key, lease), or None if there is none."""
        return _leader_of(self.prefix, list((await _range(self._client, self.prefix)).kvs))

    def observe(self) -> AsyncObserver:
        """Each new leader (or new value of the leader), starting with the current one, as an async
        iterator of :class:`LeaderInfo`; close it with ``aclose()`` (or ``async with``)."""
        return AsyncObserver(self._client, self.prefix)


class AsyncObserver:
    """An election's leaders as they change: reads the contenders, then watches the prefix from the
    revision after that read, so no change is missed. Yields only when the leader (key, token or value)
    differs from the last yielded, after all changes of a revision are applied."""

    def __init__(self, client: AsyncClient, prefix: bytes) -> None:
        self._client = client
        self.prefix = prefix
        self._watch: AsyncWatch | None = None
        self._members: dict[bytes, KeyValue] = {}
        self._last: LeaderInfo | None = None
        self._closed = False

    def __aiter__(self) -> AsyncObserver:
        return self

    async def __aenter__(self) -> AsyncObserver:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._watch is not None:
            await self._watch.aclose()

    def _changed(self) -> LeaderInfo | None:
        cur = _leader_of(self.prefix, list(self._members.values()))
        if cur is not None and cur != self._last:
            self._last = cur
            return cur
        return None

    async def __anext__(self) -> LeaderInfo:
        if self._closed:
            raise StopAsyncIteration
        if self._watch is None:
            r = await _range(self._client, self.prefix)
            self._members = {kv.key: kv for kv in r.kvs if is_contender(self.prefix, kv.key)}
            self._watch = self._client.watch_prefix(self.prefix, start_revision=r.revision + 1)
            cur = self._changed()
            if cur is not None:
                return cur
        w = self._watch
        while True:
            ev = await w.__anext__()
            if is_contender(self.prefix, ev.kv.key):
                if ev.type == "PUT":
                    self._members[ev.kv.key] = ev.kv
                else:
                    self._members.pop(ev.kv.key, None)
            if w._buffer and w._buffer[0].revision == ev.revision:
                continue  # more changes of the same revision
            cur = self._changed()
            if cur is not None:
                return cur
