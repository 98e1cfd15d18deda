"""The replicated key-value state machine (etcd v3 MVCC model) applied from committed Raft entries.

- :class:`StateMachine` (:mod:`.machine`): ``apply(index, data) -> Response``, ``snapshot()``,
  ``restore()``; owns the replicated clock and exactly-once client sessions (:mod:`.sessions`).
- :class:`KVStore` (:mod:`.mvcc`): revisions, MVCC history, range / put / delete_range / txn /
  compact, and ``events_since`` for watches.
- :func:`encode_command` / :func:`decode_command` (:mod:`.codec`): the versioned msgpack format.
- Typed requests, responses and records (:mod:`.types`); errors (:mod:`.errors`).

Everything here is deterministic and I/O-free: no clock, randomness or dict-order dependence.
"""

from .codec import (
    COMMAND_VERSION,
    OpType,
    decode_command,
    decode_response,
    encode_command,
    encode_response,
)
from .errors import (
    Compacted,
    FutureRevision,
    InvalidArgument,
    KVError,
    LimitExceeded,
    SessionExpired,
    StaleRequest,
)
from .machine import DEFAULT_SESSION_TTL_MS, StateMachine
from .mvcc import KVStore
from .sessions import Session, SessionTable
from .types import (
    ALL_KEYS_END,
    CloseSessionRequest,
    Command,
    CompactRequest,
    CompactResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    ErrorResponse,
    Event,
    EventType,
    KeepAliveRequest,
    KeyValue,
    Limits,
    NoopRequest,
    NoopResponse,
    Op,
    OpResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RegisterSessionRequest,
    Request,
    Response,
    SessionResponse,
    TxnRequest,
    TxnResponse,
    in_range,
    prefix_end,
)

__all__ = [
    "ALL_KEYS_END",
    "COMMAND_VERSION",
    "DEFAULT_SESSION_TTL_MS",
    "CloseSessionRequest",
    "Command",
    "CompactRequest",
    "CompactResponse",
    "Compacted",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DeleteRangeRequest",
    "DeleteRangeResponse",
    "ErrorResponse",
    "Event",
    "EventType",
    "FutureRevision",
    "InvalidArgument",
    "KVError",
    "KVStore",
    "KeepAliveRequest",
    "KeyValue",
    "LimitExceeded",
    "Limits",
    "NoopRequest",
    "NoopResponse",
    "Op",
    "OpResponse",
    "OpType",
    "PutRequest",
    "PutResponse",
    "RangeRequest",
    "RangeResponse",
    "RegisterSessionRequest",
    "Request",
    "Response",
    "Session",
    "SessionExpired",
    "SessionResponse",
    "SessionTable",
    "StaleRequest",
    "StateMachine",
    "TxnRequest",
    "TxnResponse",
    "decode_command",
    "decode_response",
    "encode_command",
    "encode_response",
    "in_range",
    "prefix_end",
]
