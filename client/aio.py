"""The asyncio client, on ``grpc.aio`` channels. See :class:`AsyncClient`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc

from . import _codec
from ._batch import BATCHED_METHODS, MAX_BATCHED_REQUEST_BYTES, BatchChannel
from ._call import DEFAULT_TIMEOUT, CallState, Clock
from ._errors import map_rpc_error
from ._router import Router, parse_endpoints
from ._sessions import (
    DEFAULT_MAX_SESSIONS,
    WRITE_SESSION_TRIES,
    SessionPool,
    SessionState,
    failed_write,
    pool_timeout_error,
    session_open_error,
    sessions_kept_expiring,
)
from ._watch import WatchState, watch_ended, watch_stream_error
from .errors import ClientClosed, CoterieError, InvalidArgument, SnapshotError, Unavailable
from .gossip import GossipView, view_from_pb
from .leases import AsyncLease
from .locks import AsyncElection, AsyncLock
from .membership import Member, add_request, member_from_pb, members_from_pb
from .snapshot import SnapshotFile, SnapshotInfo
from .types import (
    Bytesish,
    ClusterStatus,
    Compare,
    Fence,
    FenceLike,
    KeyValue,
    LeaseInfo,
    LeaseLike,
    LeaseTTL,
    MemberStatus,
    Op,
    PutResult,
    TxnResult,
    WatchEvent,
    fence_of,
    lease_id,
    prefix_end,
    to_bytes,
)

__all__ = ["AsyncClient", "AsyncWatch"]

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]
"""Options of the client's channels: no limit on received messages (as etcd's client), because one
watch response holds a whole revision, which has no size bound (a delete of a large prefix with
``prev_kv``), and a range answer can be large too. The server bounds what clients send it."""


class _Stubs:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.kv = kv_pb2_grpc.KVStub(channel)
        self.session = kv_pb2_grpc.SessionStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)
        self.lease = lease_pb2_grpc.LeaseStub(channel)
        self.batch = BatchChannel(self.kv.Batch)


class AsyncClient:
    """An asyncio coterie client: ``async with AsyncClient("h:p,h:p") as c: await c.put("k", b"v")``.

    It finds the leader itself, retries retriable failures with exponential back-off and full jitter
    within ``timeout`` seconds per call, skips an endpoint that keeps failing for ``breaker_cooldown``
    seconds, and makes every write exactly-once through a session (a write retried after a timeout or
    a leader change is applied once). Use it from one event loop; any number of tasks may share it,
    and their writes do not wait for each other: each write takes a session of its own from the
    client's pool for the whole call (all its retries carry that session's next seq), opening one with
    Session.Open when none is idle, up to ``max_sessions`` (beyond that a write waits, within its
    timeout, for one to be handed back, first come first served); see
    :class:`~coterie.client._sessions.SessionPool`. Idle sessions are not kept alive: one idle for half
    its TTL is dropped and replaced when needed. ``close()`` closes every session (best effort).

    Gets, puts, deletes and txns of concurrent tasks share messages on one ``KV.Batch`` stream per
    member (:mod:`~coterie.client._batch`): each request keeps its own session header and fails alone
    with the error its unary call would give, and a lone call is sent at once. ``batching=False``
    sends each as a unary call instead.

    Time and randomness come from ``_clock`` (``time.monotonic``) and ``_rng`` (a ``random.Random``):
    every call's :class:`~coterie.client._call.CallState` and the session pool read them, the router
    takes the clock when the client is made. :class:`~coterie.client.Client` runs this client on a
    loop thread of its own.
    """

    def __init__(self, endpoints: str | Iterable[str], *, timeout: float = DEFAULT_TIMEOUT,
                 breaker_threshold: int = 3, breaker_cooldown: float = 2.0,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, batching: bool = True,
                 discover: bool = True) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self._batching = batching
        """Whether get, put, delete and txn calls share ``KV.Batch`` streams (one per member; see
        :mod:`~coterie.client._batch`) instead of one unary call each. Both mean the same; batching
        costs far less CPU per call when many tasks call at once, and adds no latency to one."""
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise InvalidArgument(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = timeout
        self._clock: Clock = time.monotonic
        self._rng = random.Random()
        self._router = Router(self.endpoints, threshold=breaker_threshold, cooldown=breaker_cooldown,
                              clock=self._clock, discover=discover)
        """``discover``: learn the other members' client addresses from the cluster and fail over to
        them (default); False: talk only to the endpoints given (a client pinned to its own members)."""
        self._stubs: dict[str, _Stubs] = {}
        self._pool = SessionPool(max_sessions)
        self._pool_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._watches: weakref.WeakSet[AsyncWatch] = weakref.WeakSet()

    # ---------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the open watches, every session of the pool (best effort, at most ``min(timeout,
        5)`` seconds in all; a session not closed expires by itself) and the channels. Writes still
        running or waiting for a session fail."""
        if self._closed:
            return
        for w in list(self._watches):
            await w.aclose()
        ids = self._pool.close()
        while self._pool_waiters:
            fut = self._pool_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
        if ids:
            await self._close_sessions(ids, min(self.timeout, 5.0))
        self._closed = True
        for s in self._stubs.values():
            await s.batch.close()
            await s.channel.close()
        self._stubs.clear()

    # ---------------------------------------------------------------------------------- KV

    async def get(self, key: Bytesish, *, revision: int = 0, serializable: bool = False,
            timeout: float | None = None) -> KeyValue | None:
        """The current (or ``revision``'s) version of ``key``, or None."""
        req = _codec.range_request(to_bytes(key), revision=revision, serializable=serializable)
        r = _codec.range_from_pb(await self._invoke("kv", "Range", req, write=False, timeout=timeout))
        return r.kvs[0] if r.kvs else None

    async def get_range(self, start: Bytesish, end: Bytesish | None = None, *, limit: int = 0,
                  revision: int = 0, serializable: bool = False, keys_only: bool = False,
                  timeout: float | None = None) -> list[KeyValue]:
        """Keys in ``[start, end)`` sorted (``end`` None: just ``start``; ``b"\\0"``: every key >= start)."""
        req = _codec.range_request(to_bytes(start), to_bytes(end, "end") if end else b"", limit=limit,
                                  revision=revision, serializable=serializable, keys_only=keys_only)
        resp = await self._invoke("kv", "Range", req, write=False, timeout=timeout)
        return list(_codec.range_from_pb(resp).kvs)

    async def get_prefix(self, prefix: Bytesish, *, limit: int = 0, revision: int = 0,
                   serializable: bool = False, keys_only: bool = False,
                   timeout: float | None = None) -> list[KeyValue]:
        """Every key starting with ``prefix``, sorted."""
        p = to_bytes(prefix, "prefix")
        return await self.get_range(p, prefix_end(p), limit=limit, revision=revision,
                              serializable=serializable, keys_only=keys_only, timeout=timeout)

    async def put(self, key: Bytesish, value: Bytesish, *, lease: LeaseLike = 0, prev_kv: bool = True,
            fence: FenceLike | None = None, timeout: float | None = None) -> PutResult:
        """Set ``key``; the new revision and the replaced version (``prev``, if ``prev_kv``).
        ``lease``: a lease handle or id to attach the key to (:class:`LeaseNotFound` if it does not
        exist). ``fence``: a held lock, a leadership or a :class:`Fence`; the put is refused with
        :class:`FenceRejected` unless its holder still holds it when the cluster applies the put."""
        req = kv_pb2.PutRequest(key=to_bytes(key), value=to_bytes(value, "value"), lease=lease_id(lease),
                                prev_kv=prev_kv)
        return _codec.put_from_pb(await self._write("kv", "Put", req, timeout, fence=fence))

    async def delete(self, key: Bytesish, *, fence: FenceLike | None = None,
                     timeout: float | None = None) -> int:
        """Delete ``key``; how many keys were deleted (0 or 1). ``fence``: as :meth:`put`'s."""
        req = kv_pb2.DeleteRangeRequest(key=to_bytes(key))
        return int((await self._write("kv", "DeleteRange", req, timeout, fence=fence)).deleted)

    async def delete_range(self, start: Bytesish, end: Bytesish, *, fence: FenceLike | None = None,
                           timeout: float | None = None) -> int:
        """Delete every key in ``[start, end)``; how many. ``fence``: as :meth:`put`'s."""
        req = kv_pb2.DeleteRangeRequest(key=to_bytes(start), range_end=to_bytes(end, "end"))
        return int((await self._write("kv", "DeleteRange", req, timeout, fence=fence)).deleted)

    async def delete_prefix(self, prefix: Bytesish, *, fence: FenceLike | None = None,
                            timeout: float | None = None) -> int:
        """Delete every key starting with ``prefix``; how many. ``fence``: as :meth:`put`'s."""
        p = to_bytes(prefix, "prefix")
        return await self.delete_range(p, prefix_end(p), fence=fence, timeout=timeout)

    async def txn(self, compare: Sequence[Compare] = (), success: Sequence[Op] = (),
            failure: Sequence[Op] = (), *, fence: FenceLike | None = None,
            timeout: float | None = None) -> TxnResult:
        """If every compare holds run ``success``, else ``failure``, atomically.
        Unpacks as ``ok, results``. ``fence``: as :meth:`put`'s (the whole txn is refused)."""
        req = _codec.txn_request(compare, success, failure)
        if fence is not None or _codec.txn_writes(success, failure):
            return _codec.txn_from_pb(await self._write("kv", "Txn", req, timeout, fence=fence))
        return _codec.txn_from_pb(await self._invoke("kv", "Txn", req, write=False, timeout=timeout))

    async def compact(self, revision: int, *, timeout: float | None = None) -> int:
        """Drop the history below ``revision``; the store's revision."""
        resp = await self._write("kv", "Compact", kv_pb2.CompactionRequest(revision=revision), timeout)
        return int(resp.header.revision)

    async def status(self, *, timeout: float = 1.0) -> ClusterStatus:
        """Every endpoint's view of itself (role, term, commit and applied index) and the leader."""
        members = list(await asyncio.gather(
            *(self._status_of(ep, timeout) for ep in self._router.discovery_targets())))
        seen = {m.endpoint for m in members}
        members += [_codec.member_status(ep, error="skipped: circuit breaker open")
                    for ep in self._router.endpoints if ep not in seen]
        self._router.learn(members)
        return _codec.cluster_status(members, self._router.ids)

    # ---------------------------------------------------------------------------------- leases

    async def grant_lease(self, ttl: float, *, timeout: float | None = None) -> AsyncLease:
        """A new lease of ``ttl`` seconds (the cluster may raise it to its minimum: see
        ``lease.ttl`` and ``lease.notice``). It is not kept alive: ``valid_until`` is the grant's
        (``async with lease:``, :meth:`AsyncLease.start_keepalive` or :meth:`lease` keep one alive).
        Exactly-once: a grant retried after a failure makes one lease."""
        lease = AsyncLease(self, ttl=ttl)
        await lease._grant(timeout)  # arms the loss watchdog (through the answered grant)
        return lease

    def lease(self, ttl: float) -> AsyncLease:
        """``async with c.lease(ttl=10) as lease:`` grants a lease, keeps it alive in the background
        (every ttl/3, over the KeepAlive stream, following the leader), cancels the body the moment
        the lease is lost (then raises :class:`LeaseLost`), and revokes it on exit."""
        return AsyncLease(self, ttl=ttl)

    async def keep_alive(self, lease: LeaseLike) -> AsyncLease:
        """Keep an existing lease alive in the background: one keep-alive is answered first
        (:class:`LeaseNotFound` if the lease does not exist), then it goes on until the handle is lost,
        revoked or :meth:`AsyncLease.stop_keepalive`."""
        h = lease if isinstance(lease, AsyncLease) else AsyncLease(self, lease_id=lease_id(lease))
        await h.keep_alive_once()
        h.start_keepalive()
        return h

    async def revoke_lease(self, lease: LeaseLike, *, timeout: float | None = None) -> int:
        """Revoke a lease (a handle or an id), deleting its keys in one revision; how many keys.
        :class:`LeaseNotFound` if it does not exist."""
        if isinstance(lease, AsyncLease):
            return await lease.revoke(timeout=timeout)
        req = lease_pb2.LeaseRevokeRequest(id=lease_id(lease))
        return int((await self._write("lease", "Revoke", req, timeout)).deleted)

    async def lease_ttl(self, lease: LeaseLike, *, keys: bool = False,
                        timeout: float | None = None) -> LeaseTTL:
        """A lease's remaining and granted TTL as the leader counts them (``remaining == -1``,
        ``exists`` false: no such lease) and, with ``keys``, its attached keys."""
        req = lease_pb2.LeaseTimeToLiveRequest(id=lease_id(lease), keys=keys)
        r = await self._invoke("lease", "TimeToLive", req, write=False, timeout=timeout)
        remaining = -1.0 if r.remaining_ms < 0 else r.remaining_ms / 1000
        return LeaseTTL(int(r.id) or lease_id(lease), remaining, r.ttl_ms / 1000,
                        tuple(bytes(k) for k in r.keys))

    async def leases(self, *, timeout: float | None = None) -> list[LeaseInfo]:
        """Every live lease, by id."""
        r = await self._invoke("lease", "Leases", lease_pb2.LeaseLeasesRequest(), write=False,
                               timeout=timeout)
        return sorted((LeaseInfo(int(x.id), x.ttl_ms / 1000, x.remaining_ms / 1000, int(x.keys))
                       for x in r.leases), key=lambda x: x.id)

    # ---------------------------------------------------------------------------------- locks, elections

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None) -> AsyncLock:
        """``async with c.lock("jobs/compactor", ttl=10, timeout=30) as lock:`` holds the lock NAME
        for the body (fair, first come first served; see :class:`AsyncLock`); the body is cancelled
        if the lock's lease is lost (then :class:`LeaseLost` is raised); :class:`LockTimeout` if it is
        not acquired within ``timeout`` seconds (None: wait for ever)."""
        return AsyncLock(self, name, ttl=ttl, timeout=timeout)

    async def try_lock(self, name: str, *, ttl: float = 10.0) -> AsyncLock | None:
        """The lock NAME, held (kept alive; release it with ``await lock.release()`` or
        ``async with lock:``), if no one holds it or waits for it now; else None, without waiting."""
        lock = AsyncLock(self, name, ttl=ttl)
        return lock if await lock._try() else None

    def election(self, name: str) -> AsyncElection:
        """The election NAME: campaign, observe, resign, proclaim (see :class:`AsyncElection`)."""
        return AsyncElection(self, name)

    # ---------------------------------------------------------------------------------- membership

    async def member_list(self, *, linearizable: bool = True, timeout: float | None = None) -> list[Member]:
        """Every member (id, name, peer and client address, learner or voter), by id. With
        ``linearizable`` the answering member first confirms with the leader that it is current."""
        req = cluster_pb2.MemberListRequest(linearizable=linearizable)
        resp = await self._invoke("cluster", "MemberList", req, write=False, timeout=timeout)
        return members_from_pb(resp.members)

    async def member_add(self, peer_addr: str, *, name: str = "", client_addr: str = "",
                         learner: bool = False, member_id: int = 0, timeout: float | None = None) -> Member:
        """Add a member listening for Raft traffic at ``peer_addr`` (a non-voting learner if
        ``learner``; promote it with :meth:`member_promote` once it has caught up), then start it
        with ``coterie node --initial-cluster-state existing``. Returns it with its id (the leader
        picks one unless ``member_id`` is given) once the change is committed."""
        req = add_request(peer_addr, name=name, client_addr=client_addr, learner=learner, member_id=member_id)
        resp = await self._invoke("cluster", "MemberAdd", req, write=True, idempotent=False, timeout=timeout)
        return member_from_pb(resp.member)

    async def member_remove(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove a voter or learner; returns the members after the change, once committed."""
        req = cluster_pb2.MemberRemoveRequest(id=member_id)
        resp = await self._invoke("cluster", "MemberRemove", req, write=True, idempotent=False,
                                  timeout=timeout)
        return members_from_pb(resp.members)

    async def members(self, *, endpoint: str | None = None, name: str = "",
                      timeout: float | None = None) -> GossipView:
        """A member's gossip view (``coterie node --gossip-addr``): every member it knows, alive,
        suspect, dead or left, with tags and who caused the last changes (only ``name`` if given).
        Asks ``endpoint`` if given (that member's own view), else any endpoint.
        :class:`FailedPrecondition` if gossip is off there."""
        req = cluster_pb2.MembersRequest(name=name)
        if endpoint is None:
            resp = await self._invoke("cluster", "Members", req, write=False, timeout=timeout)
        else:
            try:
                resp = await self._get_stubs(endpoint).cluster.Members(
                    req, timeout=self.timeout if timeout is None else timeout)
            except grpc.aio.AioRpcError as exc:
                raise map_rpc_error(exc, endpoint=endpoint, write=False, idempotent=True) from None
        return view_from_pb(resp)

    async def member_promote(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make a learner a voter; refused (FailedPrecondition) while it is far behind the leader.
        Returns the members after the change, once committed."""
        req = cluster_pb2.MemberPromoteRequest(id=member_id)
        resp = await self._invoke("cluster", "MemberPromote", req, write=True, idempotent=False,
                                  timeout=timeout)
        return members_from_pb(resp.members)

    async def transfer_leader(self, member_id: int, *, timeout: float | None = None) -> int:
        """Hand leadership to voter ``member_id`` (thesis 3.10); returns the new leader's id once it
        leads. Asks the leader (a follower's answer names it). Raises :class:`InvalidArgument` for a
        member that is not a voter, or a :class:`CoterieError` (code ``ABORTED``) if the leader gave
        the transfer up; the transfer is retried while it may still succeed (a leader that changed
        meanwhile, a target that did not take over in time) within the deadline. Transferring to the
        current leader returns at once."""
        req = cluster_pb2.TransferLeaderRequest(target=member_id)
        resp = await self._invoke("cluster", "TransferLeader", req, write=True, idempotent=True,
                                  timeout=timeout)
        return int(resp.leader_id)

    async def snapshot(self, path: str, *, timeout: float = 60.0) -> SnapshotInfo:
        """Save a consistent snapshot of the cluster's state (``etcdctl snapshot save``) to ``path``:
        a member does a read barrier, so the image holds every write acknowledged before the call,
        and streams it; the bytes go to ``path + ".part"``, are checked against the announced size
        and SHA-256, fsynced and renamed to ``path``. Returns :class:`SnapshotInfo` (size, revision,
        applied index, checksum, format version). A checksum mismatch or a stream that ended early
        raises :class:`SnapshotError`, a failed call the usual :class:`CoterieError`; either way no
        ``path`` file is created (an existing one is left as it was). Retriable failures start the
        download again, on another member if need be, within ``timeout``."""
        call = self._call(timeout, False, True)
        while True:
            exhausted = call.exhausted(self._router.endpoints)
            if exhausted is not None:
                raise exhausted
            if self._router.needs_discovery():
                await self._discover(call)
            ep = self._router.pick()
            call.attempts += 1
            out = SnapshotFile(path)
            try:
                stream = self._get_stubs(ep).cluster.Snapshot(cluster_pb2.SnapshotRequest(),
                                                              timeout=call.remaining())
                async for chunk in stream:
                    out.add(chunk)
                info = out.finish(ep)
            except grpc.aio.AioRpcError as exc:
                out.discard()
                err: CoterieError = map_rpc_error(exc, endpoint=ep, write=False, idempotent=True)
            except SnapshotError as exc:
                out.discard()
                err = exc
            except BaseException:
                out.discard()
                raise
            else:
                self._router.success(ep)
                return info
            call.failed(err)
            call.saw(ep, err)
            if not err.retriable:
                raise err from None
            redirect = self._router.failure(ep, err) and not call.redirected
            call.redirected = redirect
            if not redirect:
                await asyncio.sleep(call.next_backoff())

    # ---------------------------------------------------------------------------------- watches

    def watch(self, key: Bytesish, range_end: Bytesish | None = None, *, start_revision: int = 0,
              prev_kv: bool = False) -> AsyncWatch:
        """Changes to ``key`` (or ``[key, range_end)``) from ``start_revision`` (0: from when the
        stream opens), as an :class:`AsyncWatch` (``async for`` / ``async with``) of
        :class:`WatchEvent` in revision order, each change exactly once, across member failures. A
        start below the compaction point raises :class:`Compacted` (with ``compact_revision``, the
        oldest watchable revision) from the first ``__anext__``."""
        k = to_bytes(key)
        end = to_bytes(range_end, "range_end") if range_end else b""
        w = AsyncWatch(self, WatchState(k, end, start_revision, prev_kv))
        self._watches.add(w)
        return w

    def watch_prefix(self, prefix: Bytesish, *, start_revision: int = 0, prev_kv: bool = False) -> AsyncWatch:
        """:meth:`watch` of every key starting with ``prefix``."""
        p = to_bytes(prefix, "prefix")
        return self.watch(p, prefix_end(p), start_revision=start_revision, prev_kv=prev_kv)

    # ---------------------------------------------------------------------------------- internals

    def _call(self, timeout: float, write: bool, idempotent: bool) -> CallState:
        """A new call's bookkeeping, on this client's clock and random source."""
        return CallState(timeout, write, idempotent, clock=self._clock, rng=self._rng)

    def _get_stubs(self, ep: str) -> _Stubs:
        if self._closed:
            raise ClientClosed()
        s = self._stubs.get(ep)
        if s is None:
            s = self._stubs[ep] = _Stubs(grpc.aio.insecure_channel(ep, options=CHANNEL_OPTIONS))
        return s

    async def _status_of(self, ep: str, timeout: float) -> MemberStatus:
        try:
            pb = await self._get_stubs(ep).cluster.Status(cluster_pb2.StatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return _codec.member_status(ep, error=str(map_rpc_error(exc, endpoint=ep, write=False,
                                                                   idempotent=True)))
        return _codec.member_status(ep, pb)

    async def _discover(self, call: CallState) -> None:
        t = min(0.5, call.remaining())
        if t > 0:
            statuses = await asyncio.gather(
                *(self._status_of(ep, t) for ep in self._router.discovery_targets()))
            for st in statuses:
                if st.error is None:
                    call.saw(st.endpoint, None, st.role)
                elif st.endpoint not in call.seen or not call.seen[st.endpoint][0]:
                    call.seen[st.endpoint] = (False, st.error)
            self._router.learn(statuses)

    async def _invoke(self, service: str, method: str, request: Any, *, write: bool, idempotent: bool = True,
                timeout: float | None = None, call: CallState | None = None) -> Any:
        """Send ``request`` as is (header included) until it succeeds, fails for good, or the
        deadline passes; following leader hints and backing off between failures."""
        if call is None:
            call = self._call(self.timeout if timeout is None else timeout, write, idempotent)
        while True:
            exhausted = call.exhausted(self._router.endpoints)
            if exhausted is not None:
                raise exhausted
            if self._router.needs_discovery():
                await self._discover(call)
            ep = self._router.pick()
            call.attempts += 1
            try:
                stubs = self._get_stubs(ep)
                if self._batching and service == "kv" and method in BATCHED_METHODS and (
                        size := request.ByteSize()) <= MAX_BATCHED_REQUEST_BYTES:
                    resp = await stubs.batch.call(method, request, call.attempt_timeout(), write=write,
                                                  size=size)
                else:
                    resp = await getattr(getattr(stubs, service), method)(request,
                                                                          timeout=call.attempt_timeout())
            except grpc.aio.AioRpcError as exc:
                err = map_rpc_error(exc, endpoint=ep, write=write, idempotent=idempotent)
                call.failed(err)
                call.saw(ep, err)
                if not err.retriable:
                    raise err from None
                redirect = self._router.failure(ep, err) and not call.redirected
                call.redirected = redirect
                if not redirect:
                    await asyncio.sleep(call.next_backoff())
                continue
            self._router.success(ep)
            return resp

    @property
    def _session(self) -> SessionState:
        """The session the next write would use (for tests that number a request by hand), or an
        unopened one."""
        return self._pool.newest_idle()

    async def _close_sessions(self, ids: list[int], budget: float) -> None:
        """Session.Close every id, concurrently, within ``budget`` seconds in all; failures ignored."""

        async def close_one(sid: int) -> None:
            with contextlib.suppress(CoterieError):
                await self._invoke("session", "Close", kv_pb2.SessionCloseRequest(session_id=sid),
                                   write=True, call=self._call(budget, True, True))

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(close_one(sid) for sid in ids)), budget)

    def _wake_one(self) -> None:
        """A session or a slot was freed: wake the first write still waiting for one."""
        while self._pool_waiters:
            fut = self._pool_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def _take_session(self, call: CallState) -> SessionState:
        """A session for this write alone: an idle one, a newly opened one, or (all
        ``max_sessions`` taken) the next one handed back within the call's deadline.

        Invariant: every freed session or slot wakes one waiter (:meth:`_wake_one`); a waiter that
        gives up (deadline, cancellation) after being woken passes the wake-up on, so no waiter
        sleeps while a session is idle."""
        while True:
            s = self._pool.take(self._clock())
            if s is not None:
                break
            if call.remaining() <= 0:
                raise pool_timeout_error(call.timeout, self._pool.max_sessions)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pool_waiters.append(fut)
            self._pool.waiting += 1
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(0.0, call.remaining()))
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # woken, but this write will not take it: pass it on
                else:
                    fut.cancel()
                if isinstance(exc, asyncio.TimeoutError):
                    continue  # the loop raises the pool timeout (or takes what was just freed)
                raise
            finally:
                self._pool.waiting -= 1
        if s.session_id:
            return s
        open_call = self._call(max(0.0, call.remaining()), True, True)
        try:
            resp = await self._invoke("session", "Open", kv_pb2.SessionOpenRequest(), write=True,
                                      call=open_call)
        except BaseException as exc:
            self._settle(s, retire=True)
            err = session_open_error(exc, call.timeout)
            if err is exc:
                raise
            raise err from exc
        self._pool.opened_session(s, resp, open_call.started)
        return s

    def _settle(self, s: SessionState, *, retire: bool = False, acknowledged_at: float | None = None) -> None:
        """Hand a taken session back to the pool (or drop it) and wake one waiting write; no await,
        so it also runs when the write's task is cancelled."""
        if retire:
            self._pool.retire(s)
        else:
            self._pool.give_back(s, acknowledged_at=acknowledged_at)
        self._wake_one()

    async def _write(self, service: str, method: str, request: Any, timeout: float | None, *,
                     fence: FenceLike | None = None) -> Any:
        """A write, numbered in a session of its own so that its retries apply it once.

        The session is handed back whatever the outcome (also when the task is cancelled): its seq
        only grows, so after an unknown outcome the next write of the session carries a higher seq,
        and the state machine refuses the old one as stale should it still arrive. A session the
        cluster does not know (expired) is dropped and, if the write cannot have been applied, the
        write is sent again in another."""
        f: Fence | None = fence_of(fence) if fence is not None else None
        call = self._call(self.timeout if timeout is None else timeout, True, True)
        for _ in range(WRITE_SESSION_TRIES):
            s = await self._take_session(call)
            try:
                request.header.CopyFrom(s.next_header())
                if f is not None:
                    request.header.fence.CopyFrom(kv_pb2.Fence(prefix=f.prefix, token=f.token))
                resp = await self._invoke(service, method, request, write=True, call=call)
            except BaseException as exc:
                retire, err = failed_write(exc, call)
                self._settle(s, retire=retire)
                if err is None:
                    continue
                if err is exc:
                    raise
                raise err from exc
            self._settle(s, acknowledged_at=call.started)
            return resp
        raise sessions_kept_expiring()


def _task_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not just a gRPC call under it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AsyncWatch:
    """An asyncio watch: ``async for ev in c.watch_prefix(...)`` or
    ``async with c.watch(...) as w: async for ev in w: ...``, yielding :class:`WatchEvent`.

    The stream is opened by ``async with`` (on enter) or by the first ``__anext__``; for a watch from
    "now" (``start_revision=0``) that is the point after which changes are seen.

    Invariants: as :class:`coterie.client.Watch`: every change in the range from the start revision
    on is yielded exactly once, in revision order, all changes of one revision together, across member
    failures (the stream is re-created on another member from the last complete revision).
    ``aclose()`` (from any task) ends the iteration: a pending ``__anext__`` raises
    StopAsyncIteration. A terminal error (:class:`Compacted`, :class:`InvalidArgument`, or
    :class:`DeadlineExceeded` when no member could be reached within the client's ``timeout``) is
    raised once, then the iteration ends. Cancelling a pending ``__anext__`` (e.g. by
    ``asyncio.wait_for``) ends the gRPC call under it (grpc.aio does that), but not the watch: the next
    ``__anext__`` re-creates the stream from where it left off. One task iterates a watch.
    ``endpoint``: the member it streams from; :attr:`revision`: how far it has got.
    """

    def __init__(self, client: AsyncClient, state: WatchState) -> None:
        self._client = client
        self._state = state
        self._buffer: deque[WatchEvent] = deque()
        self._call: Any = None
        self._closed = False
        self._closed_event = asyncio.Event()
        self._finished = False
        self._avoid = ""
        self.endpoint = ""
        self.reconnects = 0
        """How many times the stream was re-created on a member after a failure."""

    @property
    def revision(self) -> int:
        """The revision up to which every change has been yielded (-1 for a watch from "now" that is
        not open yet); re-watching from ``revision + 1`` continues without gaps or duplicates."""
        return self._state.delivered_revision(self._buffer)

    async def __aenter__(self) -> AsyncWatch:
        if self._call is None and not (self._closed or self._finished):
            await self._connect_or_finish()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncWatch:
        return self

    async def aclose(self) -> None:
        """End the watch (idempotent): a pending ``__anext__`` raises StopAsyncIteration."""
        self._closed = True
        self._closed_event.set()
        self._hang_up()

    def _hang_up(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _finish(self) -> None:
        self._finished = True
        self._hang_up()

    async def _connect_or_finish(self) -> None:
        try:
            await self._connect()
        except asyncio.CancelledError:
            self._hang_up()  # the task was cancelled: the next __anext__ connects again
            raise
        except BaseException:
            self._finish()
            raise

    async def _connect(self) -> None:
        """Open a stream on some member (not the one that just failed, if another is usable) and
        (re-)create the watch there; returns once the member answered ``created`` (or the watch was
        closed). Retries with back-off; raises :class:`DeadlineExceeded` after the client's
        ``timeout``, or the fatal error of the create."""
        cl = self._client
        st = cl._call(cl.timeout, False, True)
        while not self._closed:
            exhausted = st.exhausted()
            if exhausted is not None:
                raise exhausted
            ep = cl._router.pick_avoiding(self._avoid)
            st.attempts += 1
            call = self._call = cl._get_stubs(ep).kv.Watch()
            request = self._state.create_request()

            async def create(call: Any = call, request: Any = request) -> Any:
                await call.write(request)
                return await call.read()

            err: CoterieError
            try:
                first = await asyncio.wait_for(create(), st.attempt_timeout())
            except TimeoutError:
                err = Unavailable(f"no answer to the watch create within {st.attempt_timeout():.1f} s",
                                  code="DEADLINE_EXCEEDED", endpoint=ep)
            except asyncio.CancelledError:
                if _task_cancelled():
                    raise
                if self._closed:
                    return
                err = Unavailable("the watch create was cancelled", code="CANCELLED", endpoint=ep)
            except grpc.aio.AioRpcError as exc:
                err, fatal = watch_stream_error(exc, ep)
                if fatal and not self._closed:
                    raise err from None
            else:
                if first is grpc.aio.EOF:
                    err = watch_ended(ep)
                elif not first.created:
                    raise CoterieError("the watch stream did not start with a created response",
                                       endpoint=ep)
                else:
                    self._buffer.extend(self._state.on_response(first, ep))
                    self.endpoint, self._avoid = ep, ""
                    cl._router.success(ep)
                    return
            self._hang_up()
            if self._closed:
                return
            st.failed(err)
            cl._router.failure(ep, err)
            self._avoid = ep
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed_event.wait(), st.next_backoff())

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._closed or self._finished:
                raise StopAsyncIteration
            if self._buffer:
                return self._buffer.popleft()
            call = self._call
            if call is None:
                await self._connect_or_finish()
                continue
            ep = self.endpoint
            try:
                resp = await call.read()
            except asyncio.CancelledError:
                if _task_cancelled():
                    self._hang_up()  # grpc.aio cancels the call with the read: the next call resumes
                    raise
                if self._closed:
                    raise StopAsyncIteration from None
                self._hang_up()  # the call was cancelled under us (not by aclose): resume
                continue
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                err, fatal = watch_stream_error(exc, ep)
                if fatal:
                    self._finish()
                    raise err from None
                await self._resume(ep, err)
                continue
            if resp is grpc.aio.EOF:
                if self._closed:
                    raise StopAsyncIteration
                await self._resume(ep, watch_ended(ep))
                continue
            try:
                self._buffer.extend(self._state.on_response(resp, ep))
            except BaseException:
                self._finish()
                raise

    async def _resume(self, ep: str, err: CoterieError) -> None:
        self._client._router.failure(ep, err)
        self._hang_up()
        self._avoid = ep
        self.reconnects += 1
        await self._connect_or_finish()
