"""The replicated state machine: the entry point the node calls for every committed Raft entry.

Determinism: :meth:`StateMachine.apply` depends only on the current state, the entry index and the
entry data. It reads no clock (time is the max of the leader-assigned ``timestamp`` carried by the
commands), draws no random numbers and does no I/O; every output is ordered by key or by revision.
So replicas that apply the same log produce the same responses and the same :meth:`snapshot` bytes.

Errors: a command that is malformed or fails (any :class:`KVError`) yields an :class:`ErrorResponse`
and changes nothing except the replicated clock, session expiry and ``applied_index``; ``apply``
never raises for the content of an entry. It raises ``ValueError`` only when the *host* breaks the
contract by applying an index at or below ``applied_index``.

Membership: the committed membership changes of the Raft log are applied too
(:meth:`StateMachine.apply_membership`), with the attributes members publish
(:class:`MemberAttrsRequest`), into the member address book :attr:`StateMachine.members`
(:mod:`.members`), which snapshots keep.

Leases (:mod:`.leases`): :attr:`StateMachine.leases` holds them; a put with a lease that does not
exist fails with ``LeaseNotFound``; revoke and expire delete the attached keys at one revision. The
countdown is the host's: after each apply it drains :meth:`StateMachine.take_lease_updates` into its
timer (``coterie.node.server.lease_timer``), which proposes ``LeaseExpireRequest`` and
``LeaseCheckpointRequest`` entries as the leader.

Fencing: a command may carry a :class:`~.types.Fence`; if it does not hold, the command is refused
with ``FenceRejected`` and changes nothing.

Apply order for one entry: decode; advance ``now`` to ``max(now, timestamp)``; expire idle sessions
(see :mod:`.sessions`); resolve the session (unknown -> ``SessionExpired``, old seq ->
``StaleRequest``, repeated seq -> the cached response); check the fence; execute; cache the
response in the session.
"""

from __future__ import annotations

from typing import Any

from .codec import decode_command, pack, unpack
from .errors import FenceRejected, InvalidArgument, KVError, LeaseNotFound, SessionExpired, StaleRequest
from .leases import LeaseTable, LeaseUpdate
from .members import MemberAttrs, MemberTable, decode_member_context
from .mvcc import KVStore
from .sessions import SessionTable
from .types import (
    CloseSessionRequest,
    Command,
    CompactRequest,
    DeleteRangeRequest,
    ErrorResponse,
    Fence,
    KeepAliveRequest,
    LeaseCheckpointRequest,
    LeaseExpireRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    Limits,
    MemberAttrsRequest,
    NoopResponse,
    PutRequest,
    RangeRequest,
    RegisterSessionRequest,
    Request,
    Response,
    SessionResponse,
    TxnRequest,
    prefix_end,
)

__all__ = ["DEFAULT_SESSION_TTL_MS", "SNAPSHOT_MAGIC", "SNAPSHOT_VERSION", "StateMachine"]

SNAPSHOT_MAGIC = b"coterie-sm"
SNAPSHOT_VERSION = 2
"""2 added the lease table; version-1 snapshots (no leases) are still restored."""
DEFAULT_SESSION_TTL_MS = 60_000
"""Idle time after which a session expires, in timestamp units (ms). Longer keeps retries safe
across longer client outages; shorter frees memory (one cached response per session) sooner."""


class StateMachine:
    """The key-value store, client sessions and the replicated clock.

    ``limits`` and ``session_ttl`` are configuration and must be identical on every replica; they are
    not part of a snapshot.
    """

    def __init__(self, limits: Limits | None = None, session_ttl: int = DEFAULT_SESSION_TTL_MS) -> None:
        self.limits = limits if limits is not None else Limits()
        self.kv = KVStore(self.limits)
        self.sessions = SessionTable(session_ttl)
        self.members = MemberTable()
        """The member address book (:mod:`.members`)."""
        self.leases = LeaseTable()
        """The leases (:mod:`.leases`): ``get(id)``, ``ids()``, ``keys_of(id)`` read the applied
        state without a log entry."""
        self.kv.lease_exists = self.leases.__contains__
        self._applied_index = 0
        self._now = 0

    @property
    def applied_index(self) -> int:
        """Index of the last entry applied (or covered by a restored snapshot); 0 initially."""
        return self._applied_index

    @property
    def now(self) -> int:
        """The replicated clock: the max timestamp seen in applied commands (0 initially)."""
        return self._now

    @property
    def revision(self) -> int:
        """The key-value store's current revision."""
        return self.kv.revision

    def take_lease_updates(self) -> list[LeaseUpdate]:
        """Every lease change since the last call (grant / keep-alive: full TTL; checkpoint: the
        checkpointed remaining; revoke / expire: ``None``; after :meth:`restore`: one per lease
        with its checkpointed remaining, and ``None`` for each lease the restore dropped), in apply
        order. The host feeds them to its lease timer right after the apply, with its clock."""
        return self.leases.take_updates()

    def apply(self, index: int, data: bytes) -> Response:
        """Apply the committed entry ``data`` at log ``index`` (> :attr:`applied_index`; gaps are
        allowed for entries the node does not pass here, such as membership changes)."""
        if index <= self._applied_index:
            raise ValueError(f"entry {index} is at or below the applied index {self._applied_index}")
        self._applied_index = index
        try:
            command = decode_command(data)
        except InvalidArgument as e:
            return ErrorResponse(self.kv.revision, e)
        return self._apply_command(index, command)

    def apply_membership(
        self, index: int, member_id: int, *, removed: bool, context: bytes = b""
    ) -> Response:
        """Apply the committed membership change at log ``index`` (> :attr:`applied_index`): member
        ``member_id`` was added, promoted (``context`` carries its attributes, see
        :func:`~.members.encode_member_context`, or nothing) or ``removed``. Changes nothing else:
        not the revision, the clock or the sessions."""
        if index <= self._applied_index:
            raise ValueError(f"entry {index} is at or below the applied index {self._applied_index}")
        self._applied_index = index
        if removed:
            self.members.member_removed(member_id)
        else:
            self.members.member_added(member_id, decode_member_context(context))
        return NoopResponse(self.kv.revision)

    def _apply_command(self, index: int, cmd: Command) -> Response:
        self._now = max(self._now, cmd.timestamp)
        self.sessions.expire(self._now)
        if not cmd.session_id:
            return self._fenced_execute(index, cmd)
        session = self.sessions.get(cmd.session_id)
        if session is None:
            return ErrorResponse(self.kv.revision, SessionExpired(cmd.session_id))
        if cmd.seq < session.last_seq:
            return ErrorResponse(self.kv.revision, StaleRequest(cmd.session_id, cmd.seq, session.last_seq))
        self.sessions.touch(session, self._now)
        if cmd.seq == session.last_seq:
            assert session.response is not None  # seq >= 1, so last_seq >= 1 was answered
            return session.response
        response = self._fenced_execute(index, cmd)
        if self.sessions.get(cmd.session_id) is session:  # not closed by this very command
            session.last_seq = cmd.seq
            session.response = response
        return response

    def fence_holder(self, prefix: bytes) -> int:
        """The fencing token of the holder under ``prefix``: the smallest ``create_revision`` among
        the live keys in ``[prefix, prefix_end(prefix))``, or 0 if there are none."""
        end = prefix_end(prefix)
        return min((kv.create_revision for kv in self.kv.range(prefix, end, keys_only=True).kvs), default=0)

    def _check_fence(self, fence: Fence) -> None:
        holder = self.fence_holder(fence.prefix)
        if not holder or holder != fence.token:
            raise FenceRejected(fence.token, holder)

    def _fenced_execute(self, index: int, cmd: Command) -> Response:
        if cmd.fence is not None:
            try:
                self._check_fence(cmd.fence)
            except KVError as e:
                return ErrorResponse(self.kv.revision, e)
        return self._execute(index, cmd.request)

    def _execute(self, index: int, req: Request) -> Response:
        kv = self.kv
        before = kv.revision
        try:
            response = self._execute_request(index, req)
        except KVError as e:
            return ErrorResponse(kv.revision, e)
        if kv.revision != before and isinstance(req, PutRequest | DeleteRangeRequest | TxnRequest):
            self.leases.observe(kv.events_at(kv.revision))  # (revoke and expire observe their own)
        return response

    def _revoke(self, lease_id: int) -> LeaseRevokeResponse:
        """Delete the keys of ``lease_id`` at one revision, then drop the lease."""
        deleted = self.kv.delete_keys(self.leases.keys_of(lease_id))
        if deleted:
            self.leases.observe(self.kv.events_at(self.kv.revision))
        self.leases.drop(lease_id)
        return LeaseRevokeResponse(self.kv.revision, deleted)

    def _execute_request(self, index: int, req: Request) -> Response:
        kv = self.kv
        if isinstance(req, PutRequest):
            return kv.put(
                req.key,
                req.value,
                lease=req.lease,
                prev_kv=req.prev_kv,
                ignore_value=req.ignore_value,
                ignore_lease=req.ignore_lease,
            )
        if isinstance(req, RangeRequest):
            return kv.range(
                req.key,
                req.range_end,
                limit=req.limit,
                revision=req.revision,
                count_only=req.count_only,
                keys_only=req.keys_only,
            )
        if isinstance(req, DeleteRangeRequest):
            return kv.delete_range(req.key, req.range_end, prev_kv=req.prev_kv)
        if isinstance(req, TxnRequest):
            return kv.execute_txn(req)
        if isinstance(req, CompactRequest):
            return kv.compact(req.revision)
        if isinstance(req, RegisterSessionRequest):
            self.sessions.register(index, self._now)
            return SessionResponse(kv.revision, index)
        if isinstance(req, KeepAliveRequest):
            session = self.sessions.get(req.session_id)
            if session is None:
                raise SessionExpired(req.session_id)
            self.sessions.touch(session, self._now)
            return SessionResponse(kv.revision, req.session_id)
        if isinstance(req, CloseSessionRequest):
            if not self.sessions.close(req.session_id):
                raise SessionExpired(req.session_id)
            return SessionResponse(kv.revision, req.session_id)
        if isinstance(req, MemberAttrsRequest):
            self.members.set_attrs(req.member_id, MemberAttrs(req.name, req.peer_addr, req.client_addr))
            return NoopResponse(kv.revision)
        if isinstance(req, LeaseGrantRequest):
            return self._grant(index, req)
        if isinstance(req, LeaseRevokeRequest):
            if req.lease_id not in self.leases:
                raise LeaseNotFound(req.lease_id)
            return self._revoke(req.lease_id)
        if isinstance(req, LeaseKeepAliveRequest):
            return self._keep_alive(index, req)
        if isinstance(req, LeaseCheckpointRequest):
            for lease_id, remaining, refreshed in req.items:
                self.leases.checkpoint(lease_id, remaining, refreshed)
            return NoopResponse(kv.revision)
        if isinstance(req, LeaseExpireRequest):
            lease = self.leases.get(req.lease_id)
            if lease is None or lease.refreshed_index != req.refreshed_index:
                return LeaseRevokeResponse(kv.revision, 0, revoked=False)
            return self._revoke(req.lease_id)
        return NoopResponse(kv.revision)

    def _grant(self, index: int, req: LeaseGrantRequest) -> LeaseGrantResponse:
        if req.ttl_ms < 1:
            raise InvalidArgument(f"lease TTL must be >= 1 ms, got {req.ttl_ms}")
        lease_id = req.lease_id or self.leases.free_id(index)
        self.leases.grant(lease_id, req.ttl_ms, index)
        return LeaseGrantResponse(self.kv.revision, lease_id, req.ttl_ms)

    def _keep_alive(self, index: int, req: LeaseKeepAliveRequest) -> LeaseKeepAliveResponse:
        renewed: list[tuple[int, int]] = []
        missing: list[int] = []
        seen: set[int] = set()
        for lease_id in req.lease_ids:
            if lease_id in seen:
                continue
            seen.add(lease_id)
            lease = self.leases.get(lease_id)
            if lease is None:
                missing.append(lease_id)
            else:
                self.leases.renew(lease, index)
                renewed.append((lease_id, lease.ttl_ms))
        return LeaseKeepAliveResponse(self.kv.revision, tuple(renewed), tuple(missing))

    # -------------------------------------------------------------------------------------- snapshot

    def snapshot(self) -> bytes:
        """The whole state as msgpack: ``[magic, version, applied_index, now, kv, sessions, members,
        leases]`` (see ``KVStore.dump``, ``SessionTable.dump``, ``MemberTable.dump`` and
        ``LeaseTable.dump``). Version 1 had no ``leases`` (and ``members`` may be missing there).
        Equal states give equal bytes."""
        return pack(
            [
                SNAPSHOT_MAGIC,
                SNAPSHOT_VERSION,
                self._applied_index,
                self._now,
                self.kv.dump(),
                self.sessions.dump(),
                self.members.dump(),
                self.leases.dump(),
            ]
        )

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot` (version 1 or 2). Raises
        ``InvalidArgument`` (and keeps the current state) if ``data`` is not a readable snapshot.

        Lease updates: one per restored lease (its checkpointed remaining), and a ``None`` update
        for every lease of the replaced state that the snapshot does not have, so a host timer fed
        with :meth:`take_lease_updates` ends up with exactly the restored leases."""
        obj: Any = unpack(data)
        if type(obj) is not list or len(obj) not in (6, 7, 8) or obj[0] != SNAPSHOT_MAGIC:
            raise InvalidArgument("not a coterie state machine snapshot")
        if obj[1] not in (1, SNAPSHOT_VERSION) or (obj[1] == 1) != (len(obj) < 8):
            raise InvalidArgument(
                f"unsupported snapshot version {obj[1]!r} with {len(obj)} fields "
                f"(this replica reads 1 and {SNAPSHOT_VERSION})"
            )
        _, _, applied_index, now, kv_obj, sessions_obj = obj[:6]
        if type(applied_index) is not int or type(now) is not int or applied_index < 0 or now < 0:
            raise InvalidArgument("malformed snapshot header")
        kv = KVStore.load(kv_obj, self.limits)
        sessions = SessionTable(self.sessions.ttl)
        sessions.load(sessions_obj)
        members = MemberTable.load(obj[6]) if len(obj) >= 7 else MemberTable()
        live = kv.range(b"\0", b"\0").kvs
        leases = LeaseTable.load(obj[7], live) if len(obj) == 8 else LeaseTable()
        gone = [lid for lid in self.leases.ids() if lid not in leases]
        pending = [*self.leases.take_updates(), *(LeaseUpdate(lid, None, 0) for lid in gone)]
        leases.prepend_updates(pending)
        kv.lease_exists = leases.__contains__
        self.kv, self.sessions, self.members, self.leases = kv, sessions, members, leases
        self._applied_index, self._now = applied_index, now

    @classmethod
    def from_snapshot(
        cls, data: bytes, limits: Limits | None = None, session_ttl: int = DEFAULT_SESSION_TTL_MS
    ) -> StateMachine:
        """A new state machine restored from ``data``."""
        sm = cls(limits, session_ttl)
        sm.restore(data)
        return sm
