"""The typed values of the coterie client: records, results, txn compares and ops.

Keys and values are given as ``str`` (encoded as UTF-8) or ``bytes``; returned keys and values are
``bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

__all__ = [
    "ClusterStatus",
    "Compare",
    "DeleteResult",
    "Fence",
    "KeyValue",
    "LeaderInfo",
    "LeaseInfo",
    "LeaseTTL",
    "MemberStatus",
    "Op",
    "OpResult",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "WatchEvent",
    "prefix_end",
    "to_bytes",
]

Bytesish: TypeAlias = str | bytes | bytearray | memoryview


def to_bytes(v: Bytesish, what: str = "key") -> bytes:
    """``v`` as bytes: a ``str`` is encoded as UTF-8."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    raise TypeError(f"{what} must be str or bytes, not {type(v).__name__}")


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` selecting every key starting with ``prefix`` (``b"\\0"``: every key)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\0"
    p[-1] += 1
    return bytes(p)


# ============================================================================================ records


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of a key."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change seen by a watch: ``type`` "PUT" or "DELETE"; ``kv`` the new version (for a delete:
    the key with ``mod_revision`` the delete's revision); ``prev_kv`` the replaced or deleted version
    (if the watch asked for it and the key existed)."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class PutResult:
    """``revision``: the revision the put created; ``prev``: the replaced version (if asked for and the
    key existed)."""

    revision: int
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    more: bool
    count: int
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    prev_kvs: tuple[KeyValue, ...]
    revision: int


OpResult: TypeAlias = RangeResult | PutResult | DeleteResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Unpacks as ``ok, results = client.txn(...)``."""

    succeeded: bool
    results: tuple[OpResult, ...]
    revision: int

    def __iter__(self) -> Iterator[object]:
        yield self.succeeded
        yield list(self.results)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One endpoint's view of itself; ``error`` is set (and the numbers 0) if it did not answer."""

    endpoint: str
    member_id: int = 0
    name: str = ""
    role: str = ""
    """"leader", "follower", "candidate", "pre-candidate" or "" if unreachable."""
    term: int = 0
    leader_id: int = 0
    commit_index: int = 0
    applied_index: int = 0
    revision: int = 0
    error: str | None = None
    known_members: tuple[tuple[int, str], ...] = ()
    """(member id, client address) of every member the endpoint knows (its replicated address book;
    an address is "" while unknown)."""


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    leader_id: int
    """0 if no endpoint knows a leader."""
    leader_endpoint: str | None
    members: tuple[MemberStatus, ...]


# ============================================================================================ leases


@dataclass(frozen=True, slots=True)
class Fence:
    """A fencing token for ``fence=`` of a write: the write is applied only if, when the cluster
    applies it, the oldest live key under ``prefix`` (the holder of a lock, the leader of an election)
    has ``create_revision == token``; otherwise it is refused whole with :class:`FenceRejected`.
    A held lock or leadership gives its own (``lock.fence``), and is accepted as ``fence=`` directly."""

    prefix: bytes
    token: int


class HasLeaseId(Protocol):
    """A lease handle (``AsyncLease``, ``Lease``): anything with its int ``id``."""

    @property
    def id(self) -> int: ...


class HasFence(Protocol):
    """A held lock or leadership: anything that gives its :class:`Fence`."""

    @property
    def fence(self) -> Fence: ...


LeaseLike: TypeAlias = "int | HasLeaseId"
"""A lease as ``lease=`` of a write takes it: a handle or an int id (0: no lease)."""
FenceLike: TypeAlias = "Fence | HasFence"
"""A fence as ``fence=`` takes it: a :class:`Fence`, a held lock or a leadership."""


def lease_id(lease: LeaseLike | None) -> int:
    """The id of a lease handle or int id (None: 0, no lease)."""
    if lease is None:
        return 0
    lid = lease if isinstance(lease, int) else getattr(lease, "id", None)
    if isinstance(lid, bool) or not isinstance(lid, int) or lid < 0:
        raise TypeError(f"a lease is a lease handle or a non-negative int id, not {lease!r}")
    return lid


def fence_of(fence: FenceLike) -> Fence:
    """The :class:`Fence` of a ``fence=`` argument."""
    f = fence if isinstance(fence, Fence) else getattr(fence, "fence", None)
    if not isinstance(f, Fence):
        raise TypeError(f"fence= takes a Fence, a lock or a leadership, not {fence!r}")
    return f


@dataclass(frozen=True, slots=True)
class LeaseTTL:
    """A lease's time to live as the cluster's leader counts it: ``remaining`` and ``ttl`` (granted)
    in seconds; ``remaining == -1`` if the lease does not exist (then ``exists`` is false);
    ``keys``: the attached keys (when asked for)."""

    id: int
    remaining: float
    ttl: float
    keys: tuple[bytes, ...] = ()

    @property
    def exists(self) -> bool:
        return self.remaining >= 0


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One live lease: its id, granted ``ttl`` and ``remaining`` seconds, and how many ``keys`` are
    attached."""

    id: int
    ttl: float
    remaining: float
    keys: int


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """An election's leader: its ``value``, ``token`` (the create_revision of its key, strictly
    increasing across leaders), ``key`` and ``lease`` id."""

    value: bytes
    token: int
    key: bytes
    lease: int


# ============================================================================================ txn


CompareTarget: TypeAlias = Literal["version", "create", "mod", "value", "lease"]
CompareResult: TypeAlias = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn guard ``<target of key> <result> <operand>``; build one with e.g.
    ``Compare.value("k") == b"1"`` or ``Compare.version("k", prefix=True) > 0``."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    operand: int | bytes
    range_end: bytes = b""

    @staticmethod
    def value(key: Bytesish, *, prefix: bool = False) -> _CompareBuilder:
        return _CompareBuilder(key, "value", prefix)

    @staticmethod
    def version(key: Bytesish, *, prefix: bool = False) -> _CompareBuilder:
        return _CompareBuilder(key, "version", prefix)

    @staticmethod
    def create_revision(key: Bytesish, *, prefix: bool = False) -> _CompareBuilder:
        return _CompareBuilder(key, "create", prefix)

    @staticmethod
    def mod_revision(key: Bytesish, *, prefix: bool = False) -> _CompareBuilder:
        return _CompareBuilder(key, "mod", prefix)

    @staticmethod
    def lease(key: Bytesish, *, prefix: bool = False) -> _CompareBuilder:
        return _CompareBuilder(key, "lease", prefix)


class _CompareBuilder:
    """The left side of a compare; a comparison operator makes the :class:`Compare`."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, key: Bytesish, target: CompareTarget, prefix: bool) -> None:
        self.key = to_bytes(key)
        self.target: CompareTarget = target
        self.range_end = prefix_end(self.key) if prefix else b""

    def _make(self, result: CompareResult, other: object) -> Compare:
        if self.target == "value":
            if not isinstance(other, str | bytes | bytearray | memoryview):
                raise TypeError(f"a value compare needs str or bytes, not {type(other).__name__}")
            operand: int | bytes = to_bytes(other, "value")
        else:
            if not isinstance(other, int) or isinstance(other, bool):
                raise TypeError(f"a {self.target} compare needs an int, not {type(other).__name__}")
            operand = other
        return Compare(self.key, self.target, result, operand, self.range_end)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("!=", other)

    def __lt__(self, other: object) -> Compare:
        return self._make("<", other)

    def __gt__(self, other: object) -> Compare:
        return self._make(">", other)


@dataclass(frozen=True, slots=True)
class Op:
    """One op of a txn branch: ``Op.get``, ``Op.put`` or ``Op.delete``."""

    kind: Literal["get", "put", "delete"]
    key: bytes
    value: bytes = b""
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    lease: int = 0
    prev_kv: bool = False
    keys_only: bool = False

    @staticmethod
    def get(key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False, limit: int = 0,
            revision: int = 0, keys_only: bool = False) -> Op:
        k = to_bytes(key)
        end = prefix_end(k) if prefix else (to_bytes(range_end, "range_end") if range_end else b"")
        return Op("get", k, range_end=end, limit=limit, revision=revision, keys_only=keys_only)

    @staticmethod
    def put(key: Bytesish, value: Bytesish, *, lease: LeaseLike = 0, prev_kv: bool = False) -> Op:
        return Op("put", to_bytes(key), to_bytes(value, "value"), lease=lease_id(lease), prev_kv=prev_kv)

    @staticmethod
    def delete(key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False,
               prev_kv: bool = False) -> Op:
        k = to_bytes(key)
        end = prefix_end(k) if prefix else (to_bytes(range_end, "range_end") if range_end else b"")
        return Op("delete", k, range_end=end, prev_kv=prev_kv)
