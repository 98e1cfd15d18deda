"""What :class:`coterie.client.Client` and :class:`coterie.client.AsyncClient` share: endpoint
parsing, request building and response conversion, THE mapping of gRPC failures to
:mod:`coterie.client.errors`, leader tracking with a circuit breaker per endpoint, back-off and the
exactly-once session pool. No I/O happens here; the two clients only add the transport and the
retry loop around :class:`Router`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

from .errors import (
    Compacted,
    CoterieError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotLeader,
    OutcomeUnknown,
    ResourceExhausted,
    SessionExpired,
    Unavailable,
)
from .types import (
    ClusterStatus,
    Compare,
    DeleteResult,
    KeyValue,
    MemberStatus,
    Op,
    OpResult,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
)

_INVALID = kv_pb2.ERROR_CODE_INVALID_ARGUMENT
_LIMIT = kv_pb2.ERROR_CODE_LIMIT_EXCEEDED
_COMPACTED = kv_pb2.ERROR_CODE_COMPACTED
_FUTURE = kv_pb2.ERROR_CODE_FUTURE_REVISION
_STALE = kv_pb2.ERROR_CODE_STALE_REQUEST
_EXPIRED = kv_pb2.ERROR_CODE_SESSION_EXPIRED

DEFAULT_TIMEOUT = 10.0
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]
"""Options of the clients' channels: no limit on received messages (as etcd's client), because one
watch response holds a whole revision, which has no size bound (a delete of a large prefix with
``prev_kv``), and a range answer can be large too. The server bounds what clients send it."""
MAX_ATTEMPTS = 200
"""A hard bound on the attempts of one call, besides its deadline."""
MIN_RETRY_SECONDS = 0.1
"""A retry is not started with less than this left of the call's deadline: an attempt cut off by
the deadline a few milliseconds in would turn a write that was certainly not applied (the last
failure said so) into one of unknown outcome. The first attempt is always made."""


def parse_endpoints(endpoints: str | Iterable[str]) -> list[str]:
    """``"h:p,h:p"`` or a list of ``"h:p"`` as a list without duplicates; at least one."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for e in items:
        e = e.strip()
        if e.startswith("http://"):
            e = e[len("http://"):]
        if e and e not in out:
            out.append(e)
    if not out:
        raise ValueError("no endpoint given: expected 'host:port[,host:port...]'")
    return out


# ============================================================================== error mapping


def _metadata(md: Any) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    for item in md or ():
        k, v = item if isinstance(item, tuple) else (item.key, item.value)
        out[k] = v
    return out


def map_rpc_error(exc: Any, *, endpoint: str, write: bool, idempotent: bool) -> CoterieError:
    """THE mapping of a failed gRPC call (``grpc.RpcError`` or ``grpc.aio.AioRpcError``) to a typed
    error. ``write``: the call may change state; ``idempotent``: it carries a session seq (or is a
    read), so sending it again is safe."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if callable(getattr(exc, "details", None)) else "") or str(code)
    try:
        md = _metadata(exc.trailing_metadata())
    except Exception:
        md = {}
    name = code.name if code is not None else "UNKNOWN"
    kw: dict[str, Any] = {"code": name, "endpoint": endpoint}
    detail = kv_pb2.ErrorDetail()
    raw = md.get(ERROR_DETAIL_KEY)
    if isinstance(raw, bytes):
        try:
            detail.ParseFromString(raw)
        except Exception:
            detail = kv_pb2.ErrorDetail()
    leader_id = 0
    leader_raw = md.get(LEADER_ID_KEY)
    if leader_raw:
        try:
            leader_id = int(leader_raw)
        except ValueError:
            leader_id = 0
    leader_addr_raw = md.get(LEADER_ADDR_KEY, "")
    leader_addr = leader_addr_raw.decode() if isinstance(leader_addr_raw, bytes) else leader_addr_raw
    SC = grpc.StatusCode  # noqa: N806
    if code == SC.INVALID_ARGUMENT:
        return InvalidArgument(f"invalid request: {details}", **kw)
    if code == SC.OUT_OF_RANGE:
        if detail.code == _COMPACTED:
            return Compacted(
                f"revision {detail.requested_revision} is compacted; the oldest readable revision "
                f"is {detail.compact_revision}",
                compact_revision=detail.compact_revision,
                requested_revision=detail.requested_revision,
                **kw,
            )
        return InvalidArgument(f"revision out of range: {details}", **kw)
    if code == SC.NOT_FOUND and detail.code == _EXPIRED:
        return SessionExpired(f"session {detail.session_id} expired or is unknown: {details}", **kw)
    if code == SC.FAILED_PRECONDITION:
        if leader_id or leader_addr:
            return NotLeader(f"not the leader: {details}", leader_id=leader_id, leader_addr=leader_addr, **kw)
        return FailedPrecondition(f"failed precondition: {details}", **kw)
    if code == SC.RESOURCE_EXHAUSTED:
        # The node's own queue bound says "overloaded"; gRPC's server says "Concurrent RPC limit
        # exceeded" when its maximum_concurrent_rpcs is reached. Both are load, not a bad request.
        low = details.lower()
        overloaded = "overload" in low or "concurrent rpc limit" in low
        what = "server overloaded" if overloaded else "request or response too large"
        return ResourceExhausted(f"{what}: {details}", retriable=overloaded, **kw)
    if code == SC.UNAVAILABLE:
        if details.startswith("outcome unknown"):
            return OutcomeUnknown(
                f"the write may or may not have been applied: {details}", retriable=idempotent, **kw
            )
        if leader_id or leader_addr or details.startswith("not the leader"):
            return NotLeader(f"not the leader: {details}", leader_id=leader_id, leader_addr=leader_addr, **kw)
        return Unavailable(f"member unavailable: {details}", **kw)
    if code == SC.DEADLINE_EXCEEDED:
        if write:
            return OutcomeUnknown(
                f"the attempt timed out; the write may or may not have been applied: {details}",
                retriable=idempotent,
                **kw,
            )
        return Unavailable(f"the attempt timed out: {details}", **kw)
    if code == SC.CANCELLED:
        # The server's gRPC core cancels calls it cannot take under load; this client cancels only
        # watch streams, which handle that themselves.
        if write:
            return OutcomeUnknown(f"the server canceled the call; the write may or may not have been "
                                  f"applied: {details}", retriable=idempotent, **kw)
        return Unavailable(f"the server canceled the call: {details}", **kw)
    return CoterieError(f"call failed with {name}: {details}", retriable=False, **kw)


def pool_timeout_error(timeout: float, max_sessions: int) -> DeadlineExceeded:
    """No session of the pool became free within the call's deadline: the write was never sent."""
    return DeadlineExceeded(
        f"the write (not applied) did not get one of the client's {max_sessions} sessions within "
        f"{timeout:.1f} s (all in use by other writes; raise max_sessions or the timeout)", retriable=True)


WRITE_SESSION_TRIES = 3
"""Sessions one write may try: a fresh one replaces a session that expired before the write ran."""


def failed_write(exc: BaseException, call: CallState) -> tuple[bool, BaseException | None]:
    """How a session-numbered write that raised ``exc`` ends (the sync and async clients' ``_write``):
    ``(retire, error)``. ``retire``: drop the session instead of handing it back (the cluster no longer
    knows it, or saw a higher seq of it). ``error``: what to raise, or None to send the write again in
    another session (it expired, and the write cannot have been applied)."""
    if isinstance(exc, SessionExpired):
        if call.maybe_applied:
            return True, OutcomeUnknown(
                f"the session expired while the write's outcome was unknown ({exc.message}); "
                "it may or may not have been applied", retriable=False)
        return True, None
    # FailedPrecondition here is StaleRequest: the cluster saw a higher seq of this session than we did.
    return isinstance(exc, FailedPrecondition), exc


def sessions_kept_expiring() -> SessionExpired:
    return SessionExpired("the session kept expiring right after being opened", retriable=True)


def deadline_error(timeout: float, attempts: int, last: CoterieError | None, *, write: bool,
                   maybe_applied: bool) -> DeadlineExceeded:
    why = f"; last error: {last.message}" if last is not None else ""
    if write and maybe_applied:
        msg = (f"the write did not complete within {timeout:.1f} s ({attempts} attempts) and may or "
               "may not have been applied; a new call is safe only if the write is idempotent")
        return DeadlineExceeded(msg + why, retriable=False, last_error=last)
    what = "write (not applied)" if write else "call"
    return DeadlineExceeded(f"the {what} did not complete within {timeout:.1f} s ({attempts} attempts)"
                            + why, retriable=True, last_error=last)


def session_open_error(exc: BaseException, timeout: float) -> BaseException:
    """What a write raises when it could not get a session: it was never sent, so whatever the
    outcome of the Session.Open attempts (an orphaned session expires by itself), the write is
    "not applied" and safe to retry."""
    if isinstance(exc, DeadlineExceeded | OutcomeUnknown):
        last = exc.last_error if isinstance(exc, DeadlineExceeded) and exc.last_error else exc
        return DeadlineExceeded(
            f"the write (not applied) could not open a session within {timeout:.1f} s; last error: "
            f"{last.message}", retriable=True, last_error=last)
    return exc


# ============================================================================== leader tracking


@dataclass(slots=True)
class Breaker:
    """Opens after ``threshold`` consecutive transport failures; skipped until ``open_until``."""

    failures: int = 0
    open_until: float = 0.0


class Router:
    """Which endpoint to try next: the known leader, else the next healthy endpoint in turn.

    Thread-safe for the sync client (one lock, held only for bookkeeping)."""

    def __init__(self, endpoints: list[str], *, threshold: int = 3, cooldown: float = 2.0) -> None:
        self.endpoints = list(endpoints)
        self.threshold = threshold
        self.cooldown = cooldown
        self.leader: str | None = None
        self.ids: dict[int, str] = {}
        self.breakers: dict[str, Breaker] = {e: Breaker() for e in endpoints}
        self._cursor = 0
        self._lock = threading.Lock()

    def _usable(self, ep: str, now: float) -> bool:
        return self.breakers[ep].open_until <= now

    def pick(self) -> str:
        now = time.monotonic()
        with self._lock:
            if self.leader is not None and self._usable(self.leader, now):
                return self.leader
            n = len(self.endpoints)
            for i in range(n):
                ep = self.endpoints[(self._cursor + i) % n]
                if self._usable(ep, now):
                    self._cursor = (self._cursor + i + 1) % n
                    return ep
            # Every breaker is open: the one that closes first.
            return min(self.endpoints, key=lambda e: self.breakers[e].open_until)

    def pick_avoiding(self, avoid: str) -> str:
        """Like :meth:`pick` but not ``avoid`` (a member that just failed) while another endpoint is
        usable; forgets ``avoid`` as the leader."""
        with self._lock:
            if self.leader == avoid:
                self.leader = None
        for _ in range(len(self.endpoints)):
            ep = self.pick()
            if ep != avoid:
                return ep
        return self.pick()

    def success(self, ep: str) -> None:
        with self._lock:
            self.breakers[ep].failures = 0
            self.breakers[ep].open_until = 0.0

    def failure(self, ep: str, err: CoterieError) -> bool:
        """Record a failure of ``ep``; True if the leader is now known to be elsewhere and the next
        attempt may go at once (a redirect), False if the caller should back off (and rediscover).
        A redirect closes the named leader's breaker."""
        with self._lock:
            if isinstance(err, NotLeader):
                self.breakers[ep].failures = 0
                # An endpoint the caller gave (or that answered before) for that id wins over the
                # advertised address, which may not be reachable from here (NAT, containers).
                target = self.ids.get(err.leader_id, "") or err.leader_addr
                if target and target != ep:
                    if target not in self.breakers:
                        self.endpoints.append(target)
                        self.breakers[target] = Breaker()
                    # A member vouches for the leader: its breaker closes. Otherwise, with many calls
                    # sharing this router, a few slow attempts on a busy leader would open its breaker
                    # and send every call to followers that only redirect back, until the cool-down.
                    self.breakers[target].failures = 0
                    self.breakers[target].open_until = 0.0
                    if err.leader_id:
                        self.ids[err.leader_id] = target
                    self.leader = target
                    return True
                if self.leader == ep:
                    self.leader = None
                return False
            if isinstance(err, Unavailable | OutcomeUnknown):
                b = self.breakers[ep]
                b.failures += 1
                if b.failures >= self.threshold:
                    b.open_until = time.monotonic() + self.cooldown
                if self.leader == ep:
                    self.leader = None
            return False

    def needs_discovery(self) -> bool:
        return self.leader is None

    def learn(self, statuses: Sequence[MemberStatus]) -> None:
        """Update the id map and the leader from Status answers. Members that no known endpoint
        answers for are added by their advertised client address (like etcd's endpoint auto-sync),
        so a client given one member can fail over to the others."""
        with self._lock:
            for st in statuses:
                if st.error is None and st.member_id:
                    self.ids[st.member_id] = st.endpoint
            for st in statuses:
                for mid, addr in st.known_members:
                    if addr and mid not in self.ids and addr not in self.breakers:
                        self.endpoints.append(addr)
                        self.breakers[addr] = Breaker()
                        self.ids[mid] = addr
            leader_id = 0
            for st in statuses:
                if st.error is None and st.member_id:
                    self.ids[st.member_id] = st.endpoint
                    if st.role == "leader":
                        self.leader = st.endpoint
                        return
                    leader_id = leader_id or st.leader_id
            if leader_id and leader_id in self.ids:
                self.leader = self.ids[leader_id]

    def discovery_targets(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            live = [e for e in self.endpoints if self._usable(e, now)]
            return live or list(self.endpoints)


def backoff(attempt: int, *, base: float = 0.05, cap: float = 1.0) -> float:
    """Exponential back-off with full jitter."""
    return random.uniform(0.0, min(cap, base * (2 ** min(attempt, 16))))


# ============================================================================== sessions


DEFAULT_MAX_SESSIONS = 64
"""How many exactly-once sessions one client keeps at most by default: how many of its writes can be
outstanding at once."""
SESSION_REUSE_FRACTION = 0.5
"""A session idle in the pool for longer than this fraction of its TTL is not used again (it may have
expired on the cluster; it is dropped without a Close and expires there by itself)."""


@dataclass(slots=True)
class SessionState:
    """One exactly-once session (thesis 6.3): its id (0: not open yet), the last seq handed out, its
    TTL and when (``time.monotonic()``) a write of it last started that the cluster acknowledged.

    Invariant: ``seq`` never decreases while ``session_id`` stays the same, so every header handed out
    for a session carries a seq above every earlier one, including those of writes whose outcome is
    unknown (the state machine refuses a seq at or below the latest applied one as stale, so an old
    attempt that arrives late can never be applied after a newer write of the session)."""

    session_id: int = 0
    seq: int = 0
    ttl_ms: int = 0
    last_active: float = 0.0

    def opened(self, resp: Any, now: float) -> None:
        self.session_id, self.seq, self.ttl_ms, self.last_active = resp.session_id, 0, resp.ttl_ms, now

    def next_header(self) -> kv_pb2.RequestHeader:
        self.seq += 1
        return kv_pb2.RequestHeader(session_id=self.session_id, seq=self.seq)

    def expire(self, session_id: int) -> None:
        if self.session_id == session_id:
            self.session_id, self.seq = 0, 0

    def stale(self, now: float) -> bool:
        """Whether it has been idle too long to be used again (see :data:`SESSION_REUSE_FRACTION`)."""
        return self.ttl_ms > 0 and now - self.last_active > self.ttl_ms / 1000 * SESSION_REUSE_FRACTION


class SessionPool:
    """The bookkeeping of a client's exactly-once sessions; no I/O and no locking (the sync client
    holds a lock around every call, the async client runs it on one event loop).

    A write :meth:`take` s a session for itself alone and hands it back with :meth:`give_back` once
    its call has ended, whatever the outcome (the session's seq only grows, so a session whose last
    write has an unknown outcome is safe to reuse with the next seq), or drops it with :meth:`retire`
    (the cluster does not know it: expired or closed; or the session could not be opened).

    Invariants:

    - ``live == len(idle) + in_use <= max_sessions``; ``in_use`` counts the sessions taken (open or
      being opened) and not yet given back or retired; a session is in ``idle`` or taken, never both.
    - Idle sessions are reused last-in first-out, so under light load few sessions stay warm and the
      others age out (:meth:`SessionState.stale`) instead of being kept alive.
    - After :meth:`close` nothing can be taken and sessions handed back are dropped.
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        if type(max_sessions) is not int or max_sessions < 1:
            raise ValueError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        self.max_sessions = max_sessions
        self.idle: list[SessionState] = []
        self.in_use = 0
        self.closed = False
        self._taken: dict[int, SessionState] = {}
        self.opened = 0
        """Sessions opened so far (Session.Open answered)."""
        self.peak_in_use = 0
        """The most sessions taken at the same time."""
        self.waiting = 0
        """Writes currently waiting for a session (maintained by the clients)."""

    @property
    def live(self) -> int:
        return len(self.idle) + self.in_use

    def take(self, now: float) -> SessionState | None:
        """An idle session that is not stale (``session_id != 0``), else a new unopened one
        (``session_id == 0``, counted against the bound: open it, then :meth:`opened` or
        :meth:`retire`), else None when ``max_sessions`` are taken (wait for :meth:`give_back` or
        :meth:`retire`). Raises :class:`CoterieError` once closed."""
        if self.closed:
            raise CoterieError("the client is closed", retriable=False)
        while self.idle and self.idle[0].stale(now):  # the oldest are at the bottom
            self.idle.pop(0)
        s: SessionState | None = None
        while self.idle:
            cand = self.idle.pop()
            if not cand.stale(now):
                s = cand
                break
        if s is None:
            if self.live >= self.max_sessions:
                return None
            s = SessionState()
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        if s.session_id:
            self._taken[s.session_id] = s
        return s

    def opened_session(self, s: SessionState, resp: Any, now: float) -> None:
        """``s`` (taken) was opened on the cluster with ``resp`` (a SessionOpenResponse)."""
        s.opened(resp, now)
        self.opened += 1
        self._taken[s.session_id] = s

    def give_back(self, s: SessionState, *, acknowledged_at: float | None = None) -> None:
        """End the use of a taken session; ``acknowledged_at``: when the write that the cluster just
        acknowledged started (so the session was active on the cluster after that time)."""
        self.in_use -= 1
        self._taken.pop(s.session_id, None)
        if acknowledged_at is not None:
            s.last_active = max(s.last_active, acknowledged_at)
        if not self.closed and s.session_id:
            self.idle.append(s)

    def retire(self, s: SessionState) -> None:
        """End the use of a taken session and forget it (it is not, or no longer, open)."""
        self.in_use -= 1
        self._taken.pop(s.session_id, None)
        s.expire(s.session_id)

    def newest_idle(self) -> SessionState:
        """The idle session a next write would get (for tests and tools that number a request by
        hand), or an unopened one if none is idle."""
        return self.idle[-1] if self.idle else SessionState()

    def close(self) -> list[int]:
        """Stop handing out sessions; the ids of every open session (idle or taken), to Close."""
        self.closed = True
        ids = [s.session_id for s in self.idle if s.session_id]
        ids += [sid for sid in self._taken if sid and sid not in ids]
        self.idle.clear()
        return ids


# ============================================================================== requests


_ROLES = {cluster_pb2.ROLE_LEADER: "leader", cluster_pb2.ROLE_FOLLOWER: "follower",
          cluster_pb2.ROLE_CANDIDATE: "candidate", cluster_pb2.ROLE_PRE_CANDIDATE: "pre-candidate"}
_TARGETS = {"version": kv_pb2.Compare.VERSION, "create": kv_pb2.Compare.CREATE,
            "mod": kv_pb2.Compare.MOD, "value": kv_pb2.Compare.VALUE, "lease": kv_pb2.Compare.LEASE}
_TARGET_FIELDS = {"version": "version", "create": "create_revision", "mod": "mod_revision",
                  "value": "value", "lease": "lease"}
_RESULTS = {"==": kv_pb2.Compare.EQUAL, "!=": kv_pb2.Compare.NOT_EQUAL,
            "<": kv_pb2.Compare.LESS, ">": kv_pb2.Compare.GREATER}


def range_request(key: bytes, range_end: bytes = b"", *, limit: int = 0, revision: int = 0,
                  serializable: bool = False, keys_only: bool = False) -> Any:
    return kv_pb2.RangeRequest(key=key, range_end=range_end, limit=limit, revision=revision,
                               serializable=serializable, keys_only=keys_only)


def compare_to_pb(c: Compare) -> Any:
    pb = kv_pb2.Compare(result=_RESULTS[c.result], target=_TARGETS[c.target], key=c.key,
                        range_end=c.range_end)
    setattr(pb, _TARGET_FIELDS[c.target], c.operand)
    return pb


def op_to_pb(op: Op) -> Any:
    if op.kind == "get":
        return kv_pb2.RequestOp(request_range=range_request(
            op.key, op.range_end, limit=op.limit, revision=op.revision, keys_only=op.keys_only))
    if op.kind == "put":
        return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(
            key=op.key, value=op.value, lease=op.lease, prev_kv=op.prev_kv))
    return kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(
        key=op.key, range_end=op.range_end, prev_kv=op.prev_kv))


def txn_request(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Any:
    for c in compare:
        if not isinstance(c, Compare):
            raise TypeError(f"compare entries must be Compare (e.g. Compare.value(k) == v), not {c!r}")
    return kv_pb2.TxnRequest(compare=[compare_to_pb(c) for c in compare],
                             success=[op_to_pb(o) for o in success],
                             failure=[op_to_pb(o) for o in failure])


def txn_writes(success: Sequence[Op], failure: Sequence[Op]) -> bool:
    return any(o.kind != "get" for o in (*success, *failure))


# ============================================================================== responses


def kv_from_pb(pb: Any) -> KeyValue:
    return KeyValue(bytes(pb.key), bytes(pb.value), pb.create_revision, pb.mod_revision, pb.version,
                    pb.lease)


def range_from_pb(pb: Any) -> RangeResult:
    return RangeResult(tuple(kv_from_pb(k) for k in pb.kvs), pb.more, pb.count, pb.header.revision)


def put_from_pb(pb: Any) -> PutResult:
    prev = kv_from_pb(pb.prev_kv) if pb.HasField("prev_kv") and pb.prev_kv.key else None
    return PutResult(pb.header.revision, prev)


def delete_from_pb(pb: Any) -> DeleteResult:
    return DeleteResult(pb.deleted, tuple(kv_from_pb(k) for k in pb.prev_kvs), pb.header.revision)


def txn_from_pb(pb: Any) -> TxnResult:
    out: list[OpResult] = []
    for r in pb.responses:
        which = r.WhichOneof("response")
        if which == "response_range":
            out.append(range_from_pb(r.response_range))
        elif which == "response_put":
            out.append(put_from_pb(r.response_put))
        else:
            out.append(delete_from_pb(r.response_delete_range))
    return TxnResult(pb.succeeded, tuple(out), pb.header.revision)


def member_status(endpoint: str, pb: Any = None, error: str | None = None) -> MemberStatus:
    if pb is None:
        return MemberStatus(endpoint, error=error or "no answer")
    known = tuple((int(m.id), str(m.client_addr)) for m in pb.members)
    return MemberStatus(endpoint, pb.member_id, pb.name, _ROLES.get(pb.role, str(pb.role)), pb.term,
                        pb.leader_id, pb.commit_index, pb.applied_index, pb.header.revision,
                        known_members=known)


def cluster_status(members: Sequence[MemberStatus], ids: dict[int, str]) -> ClusterStatus:
    leader_id = 0
    for m in members:
        if m.role == "leader":
            leader_id = m.member_id
            break
    else:
        votes = [m.leader_id for m in members if m.error is None and m.leader_id]
        leader_id = max(set(votes), key=votes.count) if votes else 0
    ids = {**ids, **{m.member_id: m.endpoint for m in members if m.member_id}}
    return ClusterStatus(leader_id, ids.get(leader_id), tuple(members))


@dataclass(slots=True)
class CallState:
    """The bookkeeping of one call's retry loop."""

    timeout: float
    write: bool
    idempotent: bool
    deadline: float = 0.0
    started: float = 0.0
    """``time.monotonic()`` when the call began (before any attempt)."""
    attempts: int = 0
    backoffs: int = 0
    last: CoterieError | None = None
    maybe_applied: bool = False
    redirected: bool = False
    """Whether the last attempt was a redirect to a hinted leader (two in a row back off instead)."""

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attempt_timeout(self) -> float:
        """Each attempt gets at most a third of the call's timeout (at least 1 s), so a hung member
        leaves time to try another."""
        return max(0.0, min(self.remaining(), max(1.0, self.timeout / 3)))

    def exhausted(self) -> DeadlineExceeded | None:
        """The error to raise instead of another attempt, or None to go on (see
        :data:`MIN_RETRY_SECONDS`)."""
        left = self.remaining()
        if left <= 0 or self.attempts >= MAX_ATTEMPTS or (self.attempts > 0 and left < MIN_RETRY_SECONDS):
            return deadline_error(self.timeout, self.attempts, self.last, write=self.write,
                                  maybe_applied=self.maybe_applied)
        return None

    def failed(self, err: CoterieError) -> None:
        self.last = err
        if isinstance(err, OutcomeUnknown) or (
            self.write and isinstance(err, Unavailable) and "connect" not in err.message.lower()
        ):
            self.maybe_applied = True


# ============================================================================== watches

_WATCH_FATAL_CODES = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE", "UNIMPLEMENTED", "PERMISSION_DENIED",
                                "UNAUTHENTICATED"})


def watch_stream_error(exc: Any, endpoint: str) -> tuple[CoterieError, bool]:
    """A failed watch stream as ``(error, fatal)``. Fatal errors end the watch (the request is
    malformed or compacted, or the server cannot serve it anywhere); every other failure (the member
    died, shut down, or dropped the stream) is reported as :class:`Unavailable` so that the watch
    resumes on another member."""
    err = map_rpc_error(exc, endpoint=endpoint, write=False, idempotent=True)
    if err.code in _WATCH_FATAL_CODES or (isinstance(err, ResourceExhausted) and not err.retriable):
        return err, True
    if isinstance(err, Unavailable):
        return err, False
    return Unavailable(f"the watch stream failed: {err.message}", code=err.code, endpoint=endpoint), False


def watch_ended(endpoint: str) -> Unavailable:
    """The error recorded when a member ends a watch stream by itself (it is shutting down)."""
    return Unavailable("the member ended the watch stream", code="OK", endpoint=endpoint)


class WatchState:
    """The client side of one resumable watch: what to (re-)create, and how far it has got.

    Invariant: ``received >= 0`` means every change in the range with revision in
    ``[first, received]`` has been handed over exactly once (``first`` is ``start_revision``, or the
    creation revision + 1 for a watch from "now"), in revision order, and nothing above ``received``.
    It holds because the server sends whole revisions (the changes of one revision are never split
    across responses, ``kv.proto``), so after each response ``received`` is the revision of its last
    event, and a watch re-created on any member starts at ``received + 1``. A response that breaks
    this (an event at or below ``received``, or out of order) raises :class:`CoterieError` instead of
    silently losing or repeating changes.

    ``received == -1``: a watch from "now" that has not been created yet; the created response sets
    it to the member's revision at creation, so a resumed watch from "now" misses nothing that
    happened while it reconnected."""

    def __init__(self, key: bytes, range_end: bytes, start_revision: int, prev_kv: bool) -> None:
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision}")
        self.key = key
        self.range_end = range_end
        self.prev_kv = prev_kv
        self.received = start_revision - 1 if start_revision > 0 else -1

    def create_request(self) -> Any:
        start = self.received + 1 if self.received >= 0 else 0
        return kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(
            key=self.key, range_end=self.range_end, start_revision=start, prev_kv=self.prev_kv))

    def on_response(self, resp: Any, endpoint: str) -> list[WatchEvent]:
        """The events of ``resp``, advancing ``received``. Raises :class:`Compacted` (with the oldest
        watchable revision) or :class:`InvalidArgument` if the server canceled the watch, and
        :class:`CoterieError` if the response breaks the ordering contract."""
        if resp.created and self.received < 0:
            self.received = resp.header.revision  # a watch from "now" starts after this revision
        if resp.canceled:
            if resp.compact_revision:
                start = self.received + 1
                raise Compacted(
                    f"the watch cannot continue from revision {start}: it is compacted; the oldest "
                    f"watchable revision is {resp.compact_revision}",
                    compact_revision=resp.compact_revision, requested_revision=start,
                    code="OUT_OF_RANGE", endpoint=endpoint)
            raise InvalidArgument(f"the server canceled the watch: {resp.cancel_reason or 'no reason'}",
                                  code="INVALID_ARGUMENT", endpoint=endpoint)
        if resp.progress_notify:
            # Every change in the range up to header.revision was sent on this stream (kv.proto);
            # resuming from there skips nothing and survives compaction of older history.
            if self.received >= 0:
                self.received = max(self.received, int(resp.header.revision))
            return []
        out: list[WatchEvent] = []
        last = self.received
        for ev in resp.events:
            rev = ev.kv.mod_revision
            if rev < last or (rev == last and not out):
                raise CoterieError(
                    f"watch protocol violation: an event at revision {rev} after revision {last} was "
                    "complete (the server split or reordered revisions)", retriable=False,
                    endpoint=endpoint)
            last = rev
            kind: Literal["PUT", "DELETE"] = "DELETE" if ev.type == kv_pb2.Event.DELETE else "PUT"
            prev = kv_from_pb(ev.prev_kv) if ev.HasField("prev_kv") and ev.prev_kv.key else None
            out.append(WatchEvent(kind, kv_from_pb(ev.kv), prev))
        self.received = last
        return out

    def delivered_revision(self, pending: Sequence[WatchEvent]) -> int:
        """The revision up to which every change was yielded to the caller, given the ``pending``
        (received, not yet yielded) events; -1 before a watch from "now" is created."""
        if pending:
            return pending[0].kv.mod_revision - 1
        return self.received
