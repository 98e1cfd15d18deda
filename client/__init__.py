"""The coterie client library: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), with
the same surface, typed results (:mod:`.types`) and typed errors (:mod:`.errors`).

The two surfaces are one implementation: :class:`AsyncClient` (``aio.py``) is the client, and
:class:`Client` (``sync.py``) wraps it, running it on a private event loop in a daemon thread that
each blocking method submits the asyncio method to (and :class:`Watch` wraps :class:`AsyncWatch`).
Under them, private modules with one job each and no I/O: ``_errors`` (gRPC failures to typed
errors), ``_router`` (endpoints, leader tracking, circuit breakers), ``_call`` (a call's deadline,
attempts and jittered back-off), ``_sessions`` (the exactly-once session pool), ``_codec`` (protobuf
to and from the types) and ``_watch`` (a watch's resume state). The router and the call bookkeeping
take an injected clock (and random source), so their tests need no sleeps. Nothing here imports
``coterie.node`` (but ``cli.py``'s ``node`` command, which runs one)."""

from ._lease import DRIFT_BOUND
from .aio import AsyncClient, AsyncWatch
from .errors import (
    ClientClosed,
    Compacted,
    CoterieError,
    DeadlineExceeded,
    FailedPrecondition,
    FenceRejected,
    InvalidArgument,
    InvalidEndpoint,
    LeaseLost,
    LeaseNotFound,
    LockTimeout,
    NotLeader,
    OutcomeUnknown,
    ResourceExhausted,
    SessionExpired,
    SnapshotError,
    Unavailable,
)
from .fencing import FencingGuard
from .gossip import GossipMember, GossipMemberEvent, GossipView
from .leases import AsyncLease
from .locks import AsyncElection, AsyncLeadership, AsyncLock, AsyncObserver
from .snapshot import SnapshotInfo
from .sync import Client, Election, Leadership, Lease, Lock, Observer, Watch
from .types import (
    ClusterStatus,
    Compare,
    DeleteResult,
    Fence,
    KeyValue,
    LeaderInfo,
    LeaseInfo,
    LeaseTTL,
    MemberStatus,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
)

__all__ = [
    "DRIFT_BOUND",
    "AsyncClient",
    "AsyncElection",
    "AsyncLeadership",
    "AsyncLease",
    "AsyncLock",
    "AsyncObserver",
    "AsyncWatch",
    "Client",
    "ClientClosed",
    "ClusterStatus",
    "Compacted",
    "Compare",
    "CoterieError",
    "DeadlineExceeded",
    "DeleteResult",
    "Election",
    "FailedPrecondition",
    "Fence",
    "FenceRejected",
    "FencingGuard",
    "GossipMember",
    "GossipMemberEvent",
    "GossipView",
    "InvalidArgument",
    "InvalidEndpoint",
    "KeyValue",
    "LeaderInfo",
    "Leadership",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "LeaseNotFound",
    "LeaseTTL",
    "Lock",
    "LockTimeout",
    "MemberStatus",
    "NotLeader",
    "Observer",
    "Op",
    "OutcomeUnknown",
    "PutResult",
    "RangeResult",
    "ResourceExhausted",
    "SessionExpired",
    "SnapshotError",
    "SnapshotInfo",
    "TxnResult",
    "Unavailable",
    "Watch",
    "WatchEvent",
]
