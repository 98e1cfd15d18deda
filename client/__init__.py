"""The coterie client library: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), with
the same surface, typed results (:mod:`.types`) and typed errors (:mod:`.errors`)."""

from .aio import AsyncClient, AsyncWatch
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
    "ClusterStatus",
    "Compacted",
    "Compare",
    "CoterieError",
    "DeadlineExceeded",
    "DeleteResult",
    "FailedPrecondition",
    "InvalidArgument",
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
