"""The blocking client, on synchronous gRPC channels. See :class:`Client`."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc

from . import _core
from ._core import CallState, Router, SessionPool, SessionState, WatchState, backoff, map_rpc_error
from .errors import CoterieError, Unavailable
from .membership import Member, add_request, member_from_pb, members_from_pb
from .types import (
    Bytesish,
    ClusterStatus,
    Compare,
    KeyValue,
    MemberStatus,
    Op,
    PutResult,
    TxnResult,
    WatchEvent,
    prefix_end,
    to_bytes,
)

__all__ = ["Client", "Watch"]


class _Stubs:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.kv = kv_pb2_grpc.KVStub(channel)
        self.session = kv_pb2_grpc.SessionStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)


class Client:
    """A blocking coterie client: ``with Client("h:p,h:p,h:p") as c: c.put("k", b"v")``.

    It finds the leader itself, retries retriable failures with exponential back-off and full jitter
    within ``timeout`` seconds per call, skips an endpoint that keeps failing for ``breaker_cooldown``
    seconds, and makes every write exactly-once through a session (a write retried after a timeout or
    a leader change is applied once). Safe to share between threads, and concurrent writes do not wait
    for each other: each write takes a session of its own from the client's pool for the whole call
    (all its retries carry that session's next seq), opening one with Session.Open when none is idle,
    up to ``max_sessions`` (beyond that a write waits, within its timeout, for one to be handed back);
    see :class:`~coterie.client._core.SessionPool`. Idle sessions are not kept alive: one idle for
    half its TTL is dropped and replaced when needed. ``close()`` closes every session (best effort).
    """

    def __init__(self, endpoints: str | Iterable[str], *, timeout: float = _core.DEFAULT_TIMEOUT,
                 breaker_threshold: int = 3, breaker_cooldown: float = 2.0,
                 max_sessions: int = _core.DEFAULT_MAX_SESSIONS) -> None:
        self.endpoints = _core.parse_endpoints(endpoints)
        self.timeout = timeout
        self._router = Router(self.endpoints, threshold=breaker_threshold, cooldown=breaker_cooldown)
        self._stubs: dict[str, _Stubs] = {}
        self._pool = SessionPool(max_sessions)
        self._pool_cond = threading.Condition(threading.Lock())
        self._lock = threading.Lock()
        self._closed = False
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()

    # ---------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the open watches, every session of the pool (best effort, at most ``min(timeout,
        5)`` seconds in all; a session not closed expires by itself) and the channels. Writes still
        running or waiting for a session fail."""
        if self._closed:
            return
        for w in list(self._watches):
            w.close()
        with self._pool_cond:
            ids = self._pool.close()
            self._pool_cond.notify_all()
        if ids:
            self._close_sessions(ids, min(self.timeout, 5.0))
        self._closed = True
        with self._lock:
            for s in self._stubs.values():
                s.channel.close()
            self._stubs.clear()

    # ---------------------------------------------------------------------------------- KV

    def get(self, key: Bytesish, *, revision: int = 0, serializable: bool = False,
            timeout: float | None = None) -> KeyValue | None:
        """The current (or ``revision``'s) version of ``key``, or None."""
        req = _core.range_request(to_bytes(key), revision=revision, serializable=serializable)
        r = _core.range_from_pb(self._invoke("kv", "Range", req, write=False, timeout=timeout))
        return r.kvs[0] if r.kvs else None

    def get_range(self, start: Bytesish, end: Bytesish | None = None, *, limit: int = 0,
                  revision: int = 0, serializable: bool = False, keys_only: bool = False,
                  timeout: float | None = None) -> list[KeyValue]:
        """Keys in ``[start, end)`` sorted (``end`` None: just ``start``; ``b"\\0"``: every key >= start)."""
        req = _core.range_request(to_bytes(start), to_bytes(end, "end") if end else b"", limit=limit,
                                  revision=revision, serializable=serializable, keys_only=keys_only)
        return list(_core.range_from_pb(self._invoke("kv", "Range", req, write=False, timeout=timeout)).kvs)

    def get_prefix(self, prefix: Bytesish, *, limit: int = 0, revision: int = 0,
                   serializable: bool = False, keys_only: bool = False,
                   timeout: float | None = None) -> list[KeyValue]:
        """Every key starting with ``prefix``, sorted."""
        p = to_bytes(prefix, "prefix")
        return self.get_range(p, prefix_end(p), limit=limit, revision=revision,
                              serializable=serializable, keys_only=keys_only, timeout=timeout)

    def put(self, key: Bytesish, value: Bytesish, *, lease: int = 0, prev_kv: bool = True,
            timeout: float | None = None) -> PutResult:
        """Set ``key``; the new revision and the replaced version (``prev``, if ``prev_kv``)."""
        req = kv_pb2.PutRequest(key=to_bytes(key), value=to_bytes(value, "value"), lease=lease,
                                prev_kv=prev_kv)
        return _core.put_from_pb(self._write("kv", "Put", req, timeout))

    def delete(self, key: Bytesish, *, timeout: float | None = None) -> int:
        """Delete ``key``; how many keys were deleted (0 or 1)."""
        req = kv_pb2.DeleteRangeRequest(key=to_bytes(key))
        return int(self._write("kv", "DeleteRange", req, timeout).deleted)

    def delete_range(self, start: Bytesish, end: Bytesish, *, timeout: float | None = None) -> int:
        """Delete every key in ``[start, end)``; how many."""
        req = kv_pb2.DeleteRangeRequest(key=to_bytes(start), range_end=to_bytes(end, "end"))
        return int(self._write("kv", "DeleteRange", req, timeout).deleted)

    def delete_prefix(self, prefix: Bytesish, *, timeout: float | None = None) -> int:
        """Delete every key starting with ``prefix``; how many."""
        p = to_bytes(prefix, "prefix")
        return self.delete_range(p, prefix_end(p), timeout=timeout)

    def txn(self, compare: Sequence[Compare] = (), success: Sequence[Op] = (),
            failure: Sequence[Op] = (), *, timeout: float | None = None) -> TxnResult:
        """If every compare holds run ``success``, else ``failure``, atomically.
        Unpacks as ``ok, results``."""
        req = _core.txn_request(compare, success, failure)
        if _core.txn_writes(success, failure):
            return _core.txn_from_pb(self._write("kv", "Txn", req, timeout))
        return _core.txn_from_pb(self._invoke("kv", "Txn", req, write=False, timeout=timeout))

    def compact(self, revision: int, *, timeout: float | None = None) -> int:
        """Drop the history below ``revision``; the store's revision."""
        resp = self._write("kv", "Compact", kv_pb2.CompactionRequest(revision=revision), timeout)
        return int(resp.header.revision)

    def status(self, *, timeout: float = 1.0) -> ClusterStatus:
        """Every endpoint's view of itself (role, term, commit and applied index) and the leader."""
        members = self._statuses(timeout)
        seen = {m.endpoint for m in members}
        members += [_core.member_status(ep, error="skipped: circuit breaker open")
                    for ep in self._router.endpoints if ep not in seen]
        self._router.learn(members)
        return _core.cluster_status(members, self._router.ids)

    # ---------------------------------------------------------------------------------- membership

    def member_list(self, *, linearizable: bool = True, timeout: float | None = None) -> list[Member]:
        """Every member (id, name, peer and client address, learner or voter), by id. With
        ``linearizable`` the answering member first confirms with the leader that it is current."""
        req = cluster_pb2.MemberListRequest(linearizable=linearizable)
        resp = self._invoke("cluster", "MemberList", req, write=False, timeout=timeout)
        return members_from_pb(resp.members)

    def member_add(self, peer_addr: str, *, name: str = "", client_addr: str = "", learner: bool = False,
                   member_id: int = 0, timeout: float | None = None) -> Member:
        """Add a member listening for Raft traffic at ``peer_addr`` (a non-voting learner if
        ``learner``; promote it with :meth:`member_promote` once it has caught up), then start it
        with ``coterie node --initial-cluster-state existing``. Returns it with its id (the leader
        picks one unless ``member_id`` is given) once the change is committed."""
        req = add_request(peer_addr, name=name, client_addr=client_addr, learner=learner, member_id=member_id)
        resp = self._invoke("cluster", "MemberAdd", req, write=True, idempotent=False, timeout=timeout)
        return member_from_pb(resp.member)

    def member_remove(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Remove a voter or learner; returns the members after the change, once committed."""
        req = cluster_pb2.MemberRemoveRequest(id=member_id)
        resp = self._invoke("cluster", "MemberRemove", req, write=True, idempotent=False, timeout=timeout)
        return members_from_pb(resp.members)

    def member_promote(self, member_id: int, *, timeout: float | None = None) -> list[Member]:
        """Make a learner a voter; refused (FailedPrecondition) while it is far behind the leader.
        Returns the members after the change, once committed."""
        req = cluster_pb2.MemberPromoteRequest(id=member_id)
        resp = self._invoke("cluster", "MemberPromote", req, write=True, idempotent=False, timeout=timeout)
        return members_from_pb(resp.members)

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
        k = to_bytes(key)
        end = to_bytes(range_end, "range_end") if range_end else b""
        w = Watch(self, WatchState(k, end, start_revision, prev_kv))
        self._watches.add(w)
        return w

    def watch_prefix(self, prefix: Bytesish, *, start_revision: int = 0, prev_kv: bool = False) -> Watch:
        """:meth:`watch` of every key starting with ``prefix``."""
        p = to_bytes(prefix, "prefix")
        return self.watch(p, prefix_end(p), start_revision=start_revision, prev_kv=prev_kv)

    # ---------------------------------------------------------------------------------- internals

    def _get_stubs(self, ep: str) -> _Stubs:
        with self._lock:
            if self._closed:
                raise CoterieError("the client is closed", retriable=False)
            s = self._stubs.get(ep)
            if s is None:
                s = self._stubs[ep] = _Stubs(grpc.insecure_channel(ep, options=_core.CHANNEL_OPTIONS))
            return s

    def _statuses(self, timeout: float) -> list[MemberStatus]:
        """Every discovery target's Status, asked all at once (as the async client does), so a hung
        member costs one ``timeout``, not one per member asked before the others."""
        req = cluster_pb2.StatusRequest()
        pending = [(ep, self._get_stubs(ep).cluster.Status.future(req, timeout=timeout))
                   for ep in self._router.discovery_targets()]
        found: list[MemberStatus] = []
        for ep, fut in pending:
            try:
                found.append(_core.member_status(ep, fut.result()))
            except grpc.RpcError as exc:
                found.append(_core.member_status(ep, error=str(map_rpc_error(exc, endpoint=ep, write=False,
                                                                             idempotent=True))))
        return found

    def _discover(self, call: CallState) -> None:
        t = min(0.5, call.remaining())
        if t > 0:
            self._router.learn(self._statuses(t))

    def _invoke(self, service: str, method: str, request: Any, *, write: bool, idempotent: bool = True,
                timeout: float | None = None, call: CallState | None = None) -> Any:
        """Send ``request`` as is (header included) until it succeeds, fails for good, or the
        deadline passes; following leader hints and backing off between failures."""
        if call is None:
            call = CallState(self.timeout if timeout is None else timeout, write, idempotent)
        while True:
            exhausted = call.exhausted()
            if exhausted is not None:
                raise exhausted
            if self._router.needs_discovery():
                self._discover(call)
            ep = self._router.pick()
            call.attempts += 1
            try:
                stub = getattr(self._get_stubs(ep), service)
                resp = getattr(stub, method)(request, timeout=call.attempt_timeout())
            except grpc.RpcError as exc:
                err = map_rpc_error(exc, endpoint=ep, write=write, idempotent=idempotent)
                call.failed(err)
                if not err.retriable:
                    raise err from None
                redirect = self._router.failure(ep, err) and not call.redirected
                call.redirected = redirect
                if not redirect:
                    time.sleep(max(0.0, min(backoff(call.backoffs), call.remaining())))
                    call.backoffs += 1
                continue
            self._router.success(ep)
            return resp

    @property
    def _session(self) -> SessionState:
        """The session the next write would use (for tests that number a request by hand; not
        thread-safe), or an unopened one."""
        return self._pool.newest_idle()

    def _close_sessions(self, ids: list[int], budget: float) -> None:
        """Session.Close every id, concurrently, within ``budget`` seconds in all; failures ignored."""
        deadline = time.monotonic() + budget
        if self._router.needs_discovery():
            self._discover(CallState(min(budget, 1.0), False, True))
        ep = self._router.pick()
        try:
            stub = self._get_stubs(ep).session
        except CoterieError:
            return
        futures = [stub.Close.future(kv_pb2.SessionCloseRequest(session_id=sid), timeout=budget)
                   for sid in ids]
        retry: list[int] = []
        for sid, fut in zip(ids, futures, strict=True):
            try:
                fut.result()
            except grpc.RpcError as exc:
                if map_rpc_error(exc, endpoint=ep, write=True, idempotent=True).retriable:
                    retry.append(sid)
        for sid in retry:  # e.g. the leader changed: through the retry loop, in what is left
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(CoterieError):
                self._invoke("session", "Close", kv_pb2.SessionCloseRequest(session_id=sid), write=True,
                             call=CallState(left, True, True))

    def _take_session(self, call: CallState) -> SessionState:
        """A session for this write alone: an idle one, a newly opened one, or (all
        ``max_sessions`` taken) the next one handed back within the call's deadline."""
        with self._pool_cond:
            while True:
                s = self._pool.take(time.monotonic())
                if s is not None:
                    break
                left = call.remaining()
                if left <= 0:
                    self._pool_cond.notify()  # in case this waiter was woken as it timed out: pass it on
                    raise _core.pool_timeout_error(call.timeout, self._pool.max_sessions)
                self._pool.waiting += 1
                try:
                    self._pool_cond.wait(left)
                finally:
                    self._pool.waiting -= 1
        if s.session_id:
            return s
        open_call = CallState(max(0.0, call.remaining()), True, True)
        try:
            resp = self._invoke("session", "Open", kv_pb2.SessionOpenRequest(), write=True, call=open_call)
        except BaseException as exc:
            self._settle(s, retire=True)
            err = _core.session_open_error(exc, call.timeout)
            if err is exc:
                raise
            raise err from exc
        with self._pool_cond:
            self._pool.opened_session(s, resp, open_call.started)
        return s

    def _settle(self, s: SessionState, *, retire: bool = False, acknowledged_at: float | None = None) -> None:
        """Hand a taken session back to the pool (or drop it) and wake one waiting write."""
        with self._pool_cond:
            if retire:
                self._pool.retire(s)
            else:
                self._pool.give_back(s, acknowledged_at=acknowledged_at)
            self._pool_cond.notify()

    def _write(self, service: str, method: str, request: Any, timeout: float | None) -> Any:
        """A write, numbered in a session of its own so that its retries apply it once.

        The session is handed back whatever the outcome: its seq only grows, so after an unknown
        outcome the next write of the session carries a higher seq, and the state machine refuses
        the old one as stale should it still arrive. A session the cluster does not know (expired)
        is dropped and, if the write cannot have been applied, the write is sent again in another."""
        call = CallState(self.timeout if timeout is None else timeout, True, True)
        for _ in range(_core.WRITE_SESSION_TRIES):
            s = self._take_session(call)
            try:
                request.header.CopyFrom(s.next_header())
                resp = self._invoke(service, method, request, write=True, call=call)
            except BaseException as exc:
                retire, err = _core.failed_write(exc, call)
                self._settle(s, retire=retire)
                if err is None:
                    continue
                if err is exc:
                    raise
                raise err from exc
            self._settle(s, acknowledged_at=call.started)
            return resp
        raise _core.sessions_kept_expiring()


_CLOSE = object()


class Watch:
    """An open watch: iterate it for :class:`WatchEvent` in revision order.

    Invariants: every change in the range from the start revision on is yielded exactly once and in
    revision order, across member failures (the stream is re-created on another member from the last
    complete revision, :class:`~coterie.client._core.WatchState`); all changes of one revision (one
    txn) are yielded together before any later one. ``close()`` (from any thread, also while another
    thread is blocked in ``next()``) ends the iteration at once. A terminal error (:class:`Compacted`,
    :class:`InvalidArgument`, or :class:`DeadlineExceeded` when no member could be reached within the
    client's ``timeout``) is raised once; the iteration then ends. One thread iterates a watch.

    ``endpoint`` is the member it currently streams from; :attr:`revision` how far it has got.
    """

    def __init__(self, client: Client, state: WatchState) -> None:
        self._client = client
        self._state = state
        self._buffer: deque[WatchEvent] = deque()
        self._requests: queue.Queue[object] | None = None
        self._call: Any = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._finished = False
        self.endpoint = ""
        self.reconnects = 0
        """How many times the stream was re-created on a member after a failure."""
        try:
            self._connect(avoid="")
        except BaseException:
            self.close()
            raise

    @property
    def revision(self) -> int:
        """The revision up to which every change has been yielded (for a watch from "now": the
        revision it was created at, until the first event); re-watching from ``revision + 1``
        continues without gaps or duplicates."""
        return self._state.delivered_revision(self._buffer)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def close(self) -> None:
        """End the watch (idempotent, thread-safe): a blocked ``next()`` raises StopIteration."""
        with self._lock:
            self._closed.set()
            self._hang_up()

    def _hang_up(self) -> None:
        """Close the current stream (with ``_lock`` held)."""
        if self._requests is not None:
            self._requests.put(_CLOSE)
            self._requests = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    @staticmethod
    def _request_iter(q: queue.Queue[object], first: Any) -> Iterator[Any]:
        yield first
        while q.get() is not _CLOSE:
            pass

    def _open(self, ep: str) -> Any:
        """A new stream on ``ep`` carrying the create request, or None if the watch is closed."""
        with self._lock:
            if self._closed.is_set():
                return None
            q: queue.Queue[object] = queue.Queue()
            call = self._client._get_stubs(ep).kv.Watch(self._request_iter(q, self._state.create_request()))
            self._requests, self._call = q, call
            return call

    def _connect(self, avoid: str) -> None:
        """Open a stream on some member (not ``avoid`` if another is usable) and (re-)create the watch
        there; returns once the member answered ``created`` (or the watch was closed). Retries other
        members with back-off; raises :class:`DeadlineExceeded` after the client's ``timeout``, or the
        fatal error of the create (e.g. :class:`InvalidArgument`)."""
        cl = self._client
        st = CallState(cl.timeout, False, True)
        while not self._closed.is_set():
            exhausted = st.exhausted()
            if exhausted is not None:
                raise exhausted
            ep = cl._router.pick_avoiding(avoid)
            st.attempts += 1
            call = self._open(ep)
            if call is None:
                return
            timed_out = threading.Event()

            def expire(call: Any = call, flag: threading.Event = timed_out) -> None:
                flag.set()
                call.cancel()

            timer = threading.Timer(st.attempt_timeout(), expire)
            timer.daemon = True
            timer.start()
            err: CoterieError
            try:
                first = next(call)
            except grpc.RpcError as exc:
                err, fatal = _core.watch_stream_error(exc, ep)
                if timed_out.is_set():
                    err = Unavailable(f"no answer to the watch create within {st.attempt_timeout():.1f} s",
                                      code="DEADLINE_EXCEEDED", endpoint=ep)
                    fatal = False
                if fatal and not self._closed.is_set():
                    raise err from None
            except StopIteration:
                err = _core.watch_ended(ep)
            else:
                if not first.created:
                    raise CoterieError("the watch stream did not start with a created response",
                                       endpoint=ep)
                self._buffer.extend(self._state.on_response(first, ep))
                self.endpoint = ep
                cl._router.success(ep)
                return
            finally:
                timer.cancel()
            with self._lock:
                self._hang_up()
            if self._closed.is_set():
                return
            st.failed(err)
            cl._router.failure(ep, err)
            avoid = ep
            self._closed.wait(max(0.0, min(backoff(st.backoffs), st.remaining())))
            st.backoffs += 1

    def _finish(self) -> None:
        """After a terminal error: end the iteration and release the stream."""
        self._finished = True
        with self._lock:
            self._hang_up()

    def __next__(self) -> WatchEvent:
        while True:
            if self._closed.is_set() or self._finished:
                raise StopIteration
            if self._buffer:
                return self._buffer.popleft()
            with self._lock:
                call = self._call
            if call is None:
                raise StopIteration
            ep = self.endpoint
            try:
                resp = next(call)
            except (grpc.RpcError, StopIteration) as exc:
                if self._closed.is_set():
                    raise StopIteration from None
                if isinstance(exc, grpc.RpcError):
                    err, fatal = _core.watch_stream_error(exc, ep)
                    if fatal:
                        self._finish()
                        raise err from None
                else:
                    err = _core.watch_ended(ep)
                self._client._router.failure(ep, err)
                with self._lock:
                    self._hang_up()
                self.reconnects += 1
                try:
                    self._connect(avoid=ep)
                except BaseException:
                    self._finish()
                    raise
                continue
            try:
                self._buffer.extend(self._state.on_response(resp, ep))
            except BaseException:
                self._finish()
                raise
