"""Typed requests, responses and records of the key-value state machine (etcd v3 model).

Keys and values are ``bytes``. Every record is an immutable dataclass, so one ``KeyValue`` can be
shared by the key index, the event log and responses.

Key ranges follow etcd:

- ``range_end is None`` (or ``b""``, the protobuf default): the single key ``key``;
- ``range_end == b"\\0"``: every key ``>= key`` (so ``key=b"\\0", range_end=b"\\0"`` is every key);
- otherwise the half-open interval ``[key, range_end)``; empty when ``range_end <= key``;
- a prefix is ``range_end = prefix_end(prefix)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from .errors import KVError

__all__ = [
    "ALL_KEYS_END",
    "CloseSessionRequest",
    "Command",
    "CompactRequest",
    "CompactResponse",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DeleteRangeRequest",
    "DeleteRangeResponse",
    "ErrorResponse",
    "Event",
    "EventType",
    "Fence",
    "KeepAliveRequest",
    "KeyValue",
    "LeaseCheckpointRequest",
    "LeaseExpireRequest",
    "LeaseGrantRequest",
    "LeaseGrantResponse",
    "LeaseKeepAliveRequest",
    "LeaseKeepAliveResponse",
    "LeaseRevokeRequest",
    "LeaseRevokeResponse",
    "Limits",
    "NoopRequest",
    "NoopResponse",
    "Op",
    "OpResponse",
    "PutRequest",
    "PutResponse",
    "RangeRequest",
    "RangeResponse",
    "RegisterSessionRequest",
    "Request",
    "Response",
    "SessionResponse",
    "TxnRequest",
    "TxnResponse",
    "in_range",
    "prefix_end",
]

ALL_KEYS_END = b"\0"
"""``range_end`` meaning "every key ``>= key``"."""


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd).

    The last byte below 0xff is incremented and everything after it dropped; a prefix of only 0xff
    bytes (or empty) yields ``b"\\0"`` (every key ``>= prefix``).
    """
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return ALL_KEYS_END


def in_range(k: bytes, key: bytes, range_end: bytes | None) -> bool:
    """Whether ``k`` is selected by ``(key, range_end)`` under the conventions above."""
    if not range_end:
        return k == key
    if range_end == ALL_KEYS_END:
        return k >= key
    return key <= k < range_end


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and count limits, checked before a command changes anything.

    Every replica must run with the same limits (they decide whether a command fails).

    - ``max_key_bytes``: longest key (and ``range_end``), bytes. etcd has no key limit besides the
      request size; 4 KiB keeps the index small and error messages short.
    - ``max_value_bytes``: longest value, bytes (1 MiB, like etcd's default request limit).
    - ``max_txn_ops``: most compares, and most ops in each txn branch (etcd's ``--max-txn-ops``
      default is 128 and applies to each list separately).
    """

    max_key_bytes: int = 4 * 1024
    max_value_bytes: int = 1024 * 1024
    max_txn_ops: int = 128

    def __post_init__(self) -> None:
        for name in ("max_key_bytes", "max_value_bytes", "max_txn_ops"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {v!r}")


# ---------------------------------------------------------------------------------------------- records


class EventType(IntEnum):
    """Kind of change (numbers match etcd's mvccpb.Event.EventType)."""

    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of a key.

    Invariants: ``create_revision <= mod_revision``; ``version`` is 1 at creation and grows by one per
    put; a delete ends the key's generation, and the next put starts again at version 1 with a new
    ``create_revision``. ``lease`` 0 means no lease.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A change at ``kv.mod_revision``; ``sub`` orders the changes made by one txn (0, 1, ...).

    For a PUT, ``kv`` is the new version. For a DELETE, ``kv`` carries only the key and the deleting
    revision (``mod_revision``; other fields zero, like etcd). ``prev_kv`` is the version replaced or
    deleted, ``None`` for a PUT that created the key.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None
    sub: int

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


# --------------------------------------------------------------------------------------------- compares


class CompareTarget(IntEnum):
    """What a :class:`Compare` looks at (numbers match etcd's Compare.CompareTarget).

    Existence has no target of its own, as in etcd: a missing key compares as a zero KeyValue, so
    "exists" is ``CREATE_REVISION > 0`` and "missing" is ``CREATE_REVISION == 0``
    (:meth:`Compare.exists`, :meth:`Compare.missing`).
    """

    VERSION = 0
    CREATE_REVISION = 1
    MOD_REVISION = 2
    VALUE = 3
    LEASE = 4


class CompareResult(IntEnum):
    """The comparison (numbers match etcd's Compare.CompareResult): ``actual <op> compare.value``."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn guard: ``<target of key> <result> <value>``.

    ``value`` is ``bytes`` for ``VALUE`` (compared lexicographically) and an ``int`` otherwise. With a
    ``range_end`` every live key in the range must satisfy it. A missing key (or an empty range)
    compares as version/create/mod/lease 0, and a ``VALUE`` compare on it is always false (etcd).
    """

    key: bytes
    target: CompareTarget
    result: CompareResult
    value: bytes | int
    range_end: bytes | None = None

    @classmethod
    def exists(cls, key: bytes) -> Compare:
        """True when ``key`` is live: ``CREATE_REVISION > 0``."""
        return cls(key, CompareTarget.CREATE_REVISION, CompareResult.GREATER, 0)

    @classmethod
    def missing(cls, key: bytes) -> Compare:
        """True when ``key`` is not live: ``CREATE_REVISION == 0``."""
        return cls(key, CompareTarget.CREATE_REVISION, CompareResult.EQUAL, 0)


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class PutRequest:
    """Set ``key`` to ``value``. ``ignore_value``/``ignore_lease`` keep the current value/lease (the
    key must exist, and ``value``/``lease`` must then be empty/0). ``prev_kv`` returns the replaced
    version."""

    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Read keys in a range, sorted by key. ``limit`` 0 = no limit. ``revision`` 0 = current.
    ``count_only`` returns no kvs; ``keys_only`` returns kvs with empty values."""

    key: bytes
    range_end: bytes | None = None
    limit: int = 0
    revision: int = 0
    count_only: bool = False
    keys_only: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    """Delete every live key in the range; ``prev_kv`` returns the deleted versions."""

    key: bytes
    range_end: bytes | None = None
    prev_kv: bool = False


Op = PutRequest | RangeRequest | DeleteRangeRequest
"""An operation allowed inside a txn branch."""


@dataclass(frozen=True, slots=True)
class TxnRequest:
    """If every compare holds, run ``success``, else ``failure``; atomically, at one revision."""

    compare: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    @classmethod
    def of(
        cls, compare: Sequence[Compare] = (), success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnRequest:
        """Build from any sequences."""
        return cls(tuple(compare), tuple(success), tuple(failure))


@dataclass(frozen=True, slots=True)
class CompactRequest:
    """Drop history below ``revision`` (see :meth:`KVStore.compact`)."""

    revision: int


@dataclass(frozen=True, slots=True)
class RegisterSessionRequest:
    """Open a client session; its id is the Raft index of this command."""


@dataclass(frozen=True, slots=True)
class KeepAliveRequest:
    """Mark ``session_id`` active at the command's timestamp."""

    session_id: int


@dataclass(frozen=True, slots=True)
class CloseSessionRequest:
    """Forget ``session_id`` (its cached response included)."""

    session_id: int


@dataclass(frozen=True, slots=True)
class NoopRequest:
    """Changes nothing; a leader can propose one to advance the replicated clock (session expiry)."""


@dataclass(frozen=True, slots=True)
class MemberAttrsRequest:
    """Member ``member_id`` publishes its name and addresses to the member address book
    (:mod:`.members`); an empty field keeps the value the book has. Answered with a
    ``NoopResponse``, or an ``InvalidArgument`` error if the member was removed."""

    member_id: int
    name: str = ""
    peer_addr: str = ""
    client_addr: str = ""


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    """Grant a lease of ``ttl_ms`` (>= 1) milliseconds. ``lease_id`` 0: the id is the Raft index of
    this entry (or, if an explicit grant already took that id, the smallest free id above it);
    nonzero: that id, which must not be in use (``InvalidArgument`` otherwise). Answered with a
    :class:`LeaseGrantResponse`. A minimum TTL (longer than an election) is the server's policy."""

    ttl_ms: int
    lease_id: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    """Revoke ``lease_id``: delete every attached key at one new revision, then drop the lease.
    ``LeaseNotFound`` if there is no such lease. Answered with a :class:`LeaseRevokeResponse`."""

    lease_id: int


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    """Renew each lease in ``lease_ids`` to its full TTL, counted from when this entry is applied.
    Unknown ids are reported in :attr:`LeaseKeepAliveResponse.missing`; the others are renewed."""

    lease_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LeaseCheckpointRequest:
    """Proposed by the leader every checkpoint interval: ``items`` are ``(lease_id, remaining_ms,
    refreshed_index)``, the remaining TTL of each lease by the leader's own countdown when it was
    computed for the lease renewed at ``refreshed_index``. An item is ignored if the lease is gone
    or was renewed since (its ``refreshed_index`` differs): that remaining would be stale and could
    cut a fresh renewal short. ``remaining_ms`` is clamped to ``[0, ttl_ms]``. Answered with a
    ``NoopResponse``."""

    items: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class LeaseExpireRequest:
    """Proposed by the leader when its countdown for ``lease_id`` (renewed at log index
    ``refreshed_index``) reached zero. Applying it revokes the lease like a
    :class:`LeaseRevokeRequest`, unless the lease is gone or was renewed after ``refreshed_index``:
    then it is a no-op (``LeaseRevokeResponse.revoked`` False). So a keep-alive racing with an
    expiry wins or loses by log order, identically on every replica."""

    lease_id: int
    refreshed_index: int


@dataclass(frozen=True, slots=True)
class Fence:
    """A fencing condition carried by a :class:`Command`: the command runs only if, among the live
    keys under ``prefix`` (the range ``[prefix, prefix_end(prefix))``), the one with the smallest
    ``create_revision`` exists and has ``create_revision == token``; otherwise it is refused with
    ``FenceRejected`` and changes nothing.

    This is the lock of etcd's ``concurrency.Mutex``: waiters create a key under the lock prefix
    and the oldest key holds the lock, so its ``create_revision`` is a fencing token (Kleppmann,
    "How to do distributed locking") that grows with each new holder. Checking it inside the state
    machine, atomically with the command, makes a stale holder's writes fail even when they reach
    the log after its key was deleted (lease expiry, revoke)."""

    prefix: bytes
    token: int


Request = (
    PutRequest
    | RangeRequest
    | DeleteRangeRequest
    | TxnRequest
    | CompactRequest
    | RegisterSessionRequest
    | KeepAliveRequest
    | CloseSessionRequest
    | NoopRequest
    | MemberAttrsRequest
    | LeaseGrantRequest
    | LeaseRevokeRequest
    | LeaseKeepAliveRequest
    | LeaseCheckpointRequest
    | LeaseExpireRequest
)


@dataclass(frozen=True, slots=True)
class Command:
    """One log entry's payload: a request plus the envelope.

    - ``timestamp``: leader-assigned time (integer milliseconds, same unit as the session TTL). The
      state machine's clock is the max of every timestamp applied, so it never goes backwards even
      if a new leader's clock is behind. 0 = no time information.
    - ``session_id``/``seq``: exactly-once identity (0/0 = none). With a session, ``seq >= 1``.
    - ``fence``: run the request only if the fence holds (see :class:`Fence`); ``None`` = no fence.
      Checked after the session lookup (a retry returns the cached answer, a refusal included) and
      before the request.
    """

    request: Request
    timestamp: int = 0
    session_id: int = 0
    seq: int = 0
    fence: Fence | None = None


# -------------------------------------------------------------------------------------------- responses
# ``revision`` in every response is the store revision after the command (etcd's header revision).


@dataclass(frozen=True, slots=True)
class PutResponse:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class RangeResponse:
    """``count`` is the number of matching keys before ``limit``; ``more`` says kvs were cut."""

    revision: int
    kvs: tuple[KeyValue, ...] = ()
    count: int = 0
    more: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    revision: int
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


OpResponse = PutResponse | RangeResponse | DeleteRangeResponse


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """``responses`` are those of the branch that ran, in op order."""

    revision: int
    succeeded: bool
    responses: tuple[OpResponse, ...] = ()


@dataclass(frozen=True, slots=True)
class CompactResponse:
    revision: int


@dataclass(frozen=True, slots=True)
class SessionResponse:
    """For register / keep-alive / close: the session concerned."""

    revision: int
    session_id: int


@dataclass(frozen=True, slots=True)
class NoopResponse:
    revision: int


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The command failed and changed nothing (``revision`` is the unchanged store revision)."""

    revision: int
    error: KVError


@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    """The granted lease ``lease_id`` and its TTL."""

    revision: int
    lease_id: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResponse:
    """``renewed``: ``(lease_id, ttl_ms)`` of each renewed lease, in request order; ``missing``:
    the requested ids that do not exist."""

    revision: int
    renewed: tuple[tuple[int, int], ...] = ()
    missing: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    """For revoke and expire: ``deleted`` attached keys were deleted (at ``revision``, if any).
    ``revoked`` is False only for an expire that was a no-op (the lease was renewed or is gone)."""

    revision: int
    deleted: int = 0
    revoked: bool = True


Response = (
    PutResponse
    | RangeResponse
    | DeleteRangeResponse
    | TxnResponse
    | CompactResponse
    | SessionResponse
    | NoopResponse
    | ErrorResponse
    | LeaseGrantResponse
    | LeaseKeepAliveResponse
    | LeaseRevokeResponse
)
