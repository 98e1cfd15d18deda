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

from .aio import AsyncClient, AsyncWatch
from .errors import (
    ClientClosed,
    Compacted,
    CoterieError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    InvalidEndpoint,
    NotLeader,
    OutcomeUnknown,
    ResourceExhausted,
    SessionExpired,
    Unavailable,
)
from .sync import Client, Watch
from .types import (
    ClusterStatus,
    Compare,
    DeleteResult,
    KeyValue,
    MemberStatus,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
)

__all__ = [
    "AsyncClient",
    "AsyncWatch",
    "Client",
    "ClientClosed",
    "ClusterStatus",
    "Compacted",
    "Compare",
    "CoterieError",
    "DeadlineExceeded",
    "DeleteResult",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidEndpoint",
    "KeyValue",
    "MemberStatus",
    "NotLeader",
    "Op",
    "OutcomeUnknown",
    "PutResult",
    "RangeResult",
    "ResourceExhausted",
    "SessionExpired",
    "TxnResult",
    "Unavailable",
    "Watch",
    "WatchEvent",
]
