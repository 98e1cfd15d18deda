"""The command and response wire format: msgpack arrays, versioned, append-only.

A command (the data of one Raft log entry) is::

    [version, op_type, timestamp, session_id, seq, body, fence]

``version`` is :data:`COMMAND_VERSION` (1). ``op_type`` is an :class:`OpType`; ``body`` an array of
that op's fields in a fixed order (below). ``fence`` is ``[prefix, token]`` (see
:class:`~.types.Fence`) or nil; it was appended to the format, so it may be missing (= nil), and an
encoder omits it when there is no fence.

======================  ==========================================================================
PUT                     ``[key, value, lease, prev_kv, ignore_value, ignore_lease]``
RANGE                   ``[key, range_end|nil, limit, revision, count_only, keys_only]``
DELETE_RANGE            ``[key, range_end|nil, prev_kv]``
TXN                     ``[[compare...], [op...], [op...]]``; compare ``[target, result, key, value,
                        range_end|nil]``; op ``[op_type, body]`` (PUT, RANGE or DELETE_RANGE only)
COMPACT                 ``[revision]``
REGISTER_SESSION, NOOP  ``[]``
KEEP_ALIVE, CLOSE       ``[session_id]``
MEMBER_ATTRS            ``[member_id, name, peer_addr, client_addr]`` (strings are msgpack ``str``)
LEASE_GRANT             ``[ttl_ms, lease_id]``
LEASE_REVOKE            ``[lease_id]``
LEASE_KEEP_ALIVE        ``[[lease_id...]]``
LEASE_CHECKPOINT        ``[[[lease_id, remaining_ms, refreshed_index]...]]``
LEASE_EXPIRE            ``[lease_id, refreshed_index]``
======================  ==========================================================================

Keys and values are msgpack ``bin``; integers are non-negative and below 2**63 (compare values may
be negative); flags are booleans. An empty entry (``b""``, e.g. a new leader's no-op) decodes as
``NOOP``.

Compatibility rules: op types are never renumbered or reused; a new field is only ever appended to a
body, with a default, so a decoder fills trailing fields that an older encoder left out. A decoder
rejects what it does not know (a newer version, op type or extra fields) with ``InvalidArgument``;
writers must not emit such commands before every replica understands them (cluster-version gating is
the node's job), otherwise replicas would diverge.

Anything malformed raises :class:`InvalidArgument` from :func:`decode_command`, never another
exception, so a bad log entry becomes the same error response on every replica.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import msgpack

from .errors import InvalidArgument, error_from_wire, error_to_wire
from .types import (
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
    Fence,
    KeepAliveRequest,
    KeyValue,
    LeaseCheckpointRequest,
    LeaseExpireRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    MemberAttrsRequest,
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
)

__all__ = [
    "COMMAND_VERSION",
    "OpType",
    "ResponseType",
    "decode_command",
    "decode_event",
    "decode_kv",
    "decode_response",
    "decode_response_obj",
    "encode_command",
    "encode_event",
    "encode_kv",
    "encode_response",
    "encode_response_obj",
    "pack",
    "unpack",
]

COMMAND_VERSION = 1

_MAX_INT = (1 << 63) - 1


class OpType(IntEnum):
    """Command op types. Append-only: never renumber or reuse a value."""

    NOOP = 0
    PUT = 1
    RANGE = 2
    DELETE_RANGE = 3
    TXN = 4
    COMPACT = 5
    REGISTER_SESSION = 6
    KEEP_ALIVE = 7
    CLOSE_SESSION = 8
    MEMBER_ATTRS = 9
    LEASE_GRANT = 10
    LEASE_REVOKE = 11
    LEASE_KEEP_ALIVE = 12
    LEASE_CHECKPOINT = 13
    LEASE_EXPIRE = 14


class ResponseType(IntEnum):
    """Response tags (``[tag, revision, ...]``). Append-only."""

    ERROR = 0
    PUT = 1
    RANGE = 2
    DELETE_RANGE = 3
    TXN = 4
    COMPACT = 5
    SESSION = 6
    NOOP = 7
    LEASE_GRANT = 8
    LEASE_KEEP_ALIVE = 9
    LEASE_REVOKE = 10


def pack(obj: Any) -> bytes:
    """msgpack with ``bin`` for bytes and ``str`` for text; deterministic for lists and scalars."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Inverse of :func:`pack`; raises ``InvalidArgument`` for anything that is not one msgpack value."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise InvalidArgument(f"malformed msgpack: {e}") from None


# ----------------------------------------------------------------------------------- field validation


def _bytes(v: Any, what: str) -> bytes:
    if type(v) is not bytes:
        raise InvalidArgument(f"{what} must be bytes, got {type(v).__name__}")
    return v


def _opt_bytes(v: Any, what: str) -> bytes | None:
    return None if v is None else _bytes(v, what)


def _uint(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _MAX_INT:
        raise InvalidArgument(f"{what} must be an int in [0, 2**63), got {v!r:.40}")
    return v


def _sint(v: Any, what: str) -> int:
    if type(v) is not int or not -_MAX_INT - 1 <= v <= _MAX_INT:
        raise InvalidArgument(f"{what} must be a 64-bit int, got {v!r:.40}")
    return v


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise InvalidArgument(f"{what} must be a bool, got {type(v).__name__}")
    return v


def _id(v: Any, what: str) -> Any:
    return v


def _str(v: Any, what: str) -> str:
    if type(v) is not str:
        raise InvalidArgument(f"{what} must be a string, got {type(v).__name__}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if type(v) is not list:
        raise InvalidArgument(f"{what} must be an array, got {type(v).__name__}")
    return v


_Check = Callable[[Any, str], Any]
_REQUIRED = object()


def _fields(body: Any, what: str, spec: list[tuple[str, _Check, Any]]) -> list[Any]:
    """Validate ``body`` against ``spec`` (name, check, default or _REQUIRED); fill missing trailing
    fields with their defaults."""
    body = _list(body, what)
    required = sum(1 for _, _, d in spec if d is _REQUIRED)
    if not required <= len(body) <= len(spec):
        raise InvalidArgument(f"{what} has {len(body)} fields, expected {required} to {len(spec)}")
    out = []
    for i, (name, check, default) in enumerate(spec):
        out.append(check(body[i], f"{what}.{name}") if i < len(body) else default)
    return out


_PUT_SPEC: list[tuple[str, _Check, Any]] = [
    ("key", _bytes, _REQUIRED),
    ("value", _bytes, b""),
    ("lease", _uint, 0),
    ("prev_kv", _bool, False),
    ("ignore_value", _bool, False),
    ("ignore_lease", _bool, False),
]
_RANGE_SPEC: list[tuple[str, _Check, Any]] = [
    ("key", _bytes, _REQUIRED),
    ("range_end", _opt_bytes, None),
    ("limit", _uint, 0),
    ("revision", _uint, 0),
    ("count_only", _bool, False),
    ("keys_only", _bool, False),
]
_MEMBER_ATTRS_SPEC: list[tuple[str, _Check, Any]] = [
    ("member_id", _uint, _REQUIRED),
    ("name", _str, ""),
    ("peer_addr", _str, ""),
    ("client_addr", _str, ""),
]
_DELETE_SPEC: list[tuple[str, _Check, Any]] = [
    ("key", _bytes, _REQUIRED),
    ("range_end", _opt_bytes, None),
    ("prev_kv", _bool, False),
]


# ------------------------------------------------------------------------------------------- requests


def _encode_op(op: Op) -> list[Any]:
    if isinstance(op, PutRequest):
        return [op.key, op.value, op.lease, op.prev_kv, op.ignore_value, op.ignore_lease]
    if isinstance(op, RangeRequest):
        return [op.key, op.range_end, op.limit, op.revision, op.count_only, op.keys_only]
    return [op.key, op.range_end, op.prev_kv]


def _op_type(request: Request) -> OpType:
    return _OP_TYPES[type(request)]


_OP_TYPES: dict[type, OpType] = {
    NoopRequest: OpType.NOOP,
    PutRequest: OpType.PUT,
    RangeRequest: OpType.RANGE,
    DeleteRangeRequest: OpType.DELETE_RANGE,
    TxnRequest: OpType.TXN,
    CompactRequest: OpType.COMPACT,
    RegisterSessionRequest: OpType.REGISTER_SESSION,
    KeepAliveRequest: OpType.KEEP_ALIVE,
    CloseSessionRequest: OpType.CLOSE_SESSION,
    MemberAttrsRequest: OpType.MEMBER_ATTRS,
    LeaseGrantRequest: OpType.LEASE_GRANT,
    LeaseRevokeRequest: OpType.LEASE_REVOKE,
    LeaseKeepAliveRequest: OpType.LEASE_KEEP_ALIVE,
    LeaseCheckpointRequest: OpType.LEASE_CHECKPOINT,
    LeaseExpireRequest: OpType.LEASE_EXPIRE,
}


def _encode_body(request: Request) -> list[Any]:
    if isinstance(request, PutRequest | RangeRequest | DeleteRangeRequest):
        return _encode_op(request)
    if isinstance(request, TxnRequest):
        return [
            [[int(c.target), int(c.result), c.key, c.value, c.range_end] for c in request.compare],
            [[int(_op_type(op)), _encode_op(op)] for op in request.success],
            [[int(_op_type(op)), _encode_op(op)] for op in request.failure],
        ]
    if isinstance(request, CompactRequest):
        return [request.revision]
    if isinstance(request, KeepAliveRequest | CloseSessionRequest):
        return [request.session_id]
    if isinstance(request, MemberAttrsRequest):
        return [request.member_id, request.name, request.peer_addr, request.client_addr]
    if isinstance(request, LeaseGrantRequest):
        return [request.ttl_ms, request.lease_id]
    if isinstance(request, LeaseRevokeRequest):
        return [request.lease_id]
    if isinstance(request, LeaseKeepAliveRequest):
        return [list(request.lease_ids)]
    if isinstance(request, LeaseCheckpointRequest):
        return [[list(item) for item in request.items]]
    if isinstance(request, LeaseExpireRequest):
        return [request.lease_id, request.refreshed_index]
    return []


def encode_command(
    request: Request,
    *,
    timestamp: int = 0,
    session_id: int = 0,
    seq: int = 0,
    fence: Fence | None = None,
) -> bytes:
    """The log entry data for ``request`` with its envelope (see :class:`Command`). Without a fence
    the entry is byte-identical to the format before fences existed."""
    obj = [COMMAND_VERSION, int(_op_type(request)), timestamp, session_id, seq, _encode_body(request)]
    if fence is not None:
        obj.append([fence.prefix, fence.token])
    return pack(obj)


def _decode_fence(obj: Any) -> Fence | None:
    if obj is None:
        return None
    prefix, token = _fields(obj, "fence", [("prefix", _bytes, _REQUIRED), ("token", _uint, _REQUIRED)])
    if not prefix:
        raise InvalidArgument("fence prefix is empty")
    return Fence(prefix, token)


def _uint_list(v: Any, what: str) -> tuple[int, ...]:
    return tuple(_uint(x, f"{what}[{i}]") for i, x in enumerate(_list(v, what)))


def _checkpoint_items(v: Any, what: str) -> tuple[tuple[int, int, int], ...]:
    items = []
    for i, item in enumerate(_list(v, what)):
        lease_id, remaining, refreshed = _fields(
            item,
            f"{what}[{i}]",
            [
                ("lease_id", _uint, _REQUIRED),
                ("remaining_ms", _uint, _REQUIRED),
                ("refreshed_index", _uint, _REQUIRED),
            ],
        )
        items.append((lease_id, remaining, refreshed))
    return tuple(items)


def _decode_op(op_type: int, body: Any, what: str) -> Op:
    if op_type == OpType.PUT:
        return PutRequest(*_fields(body, what, _PUT_SPEC))
    if op_type == OpType.RANGE:
        return RangeRequest(*_fields(body, what, _RANGE_SPEC))
    if op_type == OpType.DELETE_RANGE:
        return DeleteRangeRequest(*_fields(body, what, _DELETE_SPEC))
    raise InvalidArgument(f"{what}: op type {op_type} is not allowed in a txn")


def _decode_compare(obj: Any, what: str) -> Compare:
    target, result, key, value, range_end = _fields(
        obj,
        what,
        [
            ("target", _uint, _REQUIRED),
            ("result", _uint, _REQUIRED),
            ("key", _bytes, _REQUIRED),
            ("value", _id, _REQUIRED),
            ("range_end", _opt_bytes, None),
        ],
    )
    if target not in CompareTarget.__members__.values():
        raise InvalidArgument(f"{what}: unknown compare target {target}")
    if result not in CompareResult.__members__.values():
        raise InvalidArgument(f"{what}: unknown compare result {result}")
    t = CompareTarget(target)
    value = _bytes(value, f"{what}.value") if t == CompareTarget.VALUE else _sint(value, f"{what}.value")
    return Compare(key, t, CompareResult(result), value, range_end)


def _decode_ops(obj: Any, what: str) -> tuple[Op, ...]:
    ops = []
    for i, item in enumerate(_list(obj, what)):
        op_type, body = _fields(
            item, f"{what}[{i}]", [("type", _uint, _REQUIRED), ("body", _list, _REQUIRED)]
        )
        ops.append(_decode_op(op_type, body, f"{what}[{i}]"))
    return tuple(ops)


def _decode_request(op_type: int, body: Any) -> Request:
    if op_type in (OpType.PUT, OpType.RANGE, OpType.DELETE_RANGE):
        return _decode_op(op_type, body, OpType(op_type).name.lower())
    if op_type == OpType.TXN:
        compares, success, failure = _fields(
            body,
            "txn",
            [("compare", _list, _REQUIRED), ("success", _list, _REQUIRED), ("failure", _list, _REQUIRED)],
        )
        return TxnRequest(
            tuple(_decode_compare(c, f"txn.compare[{i}]") for i, c in enumerate(compares)),
            _decode_ops(success, "txn.success"),
            _decode_ops(failure, "txn.failure"),
        )
    if op_type == OpType.COMPACT:
        return CompactRequest(*_fields(body, "compact", [("revision", _uint, _REQUIRED)]))
    if op_type in (OpType.KEEP_ALIVE, OpType.CLOSE_SESSION):
        (sid,) = _fields(body, "session", [("session_id", _uint, _REQUIRED)])
        return KeepAliveRequest(sid) if op_type == OpType.KEEP_ALIVE else CloseSessionRequest(sid)
    if op_type in (OpType.REGISTER_SESSION, OpType.NOOP):
        _fields(body, OpType(op_type).name.lower(), [])
        return RegisterSessionRequest() if op_type == OpType.REGISTER_SESSION else NoopRequest()
    if op_type == OpType.MEMBER_ATTRS:
        return MemberAttrsRequest(*_fields(body, "member_attrs", _MEMBER_ATTRS_SPEC))
    if op_type == OpType.LEASE_GRANT:
        return LeaseGrantRequest(
            *_fields(body, "lease_grant", [("ttl_ms", _uint, _REQUIRED), ("lease_id", _uint, 0)])
        )
    if op_type == OpType.LEASE_REVOKE:
        return LeaseRevokeRequest(*_fields(body, "lease_revoke", [("lease_id", _uint, _REQUIRED)]))
    if op_type == OpType.LEASE_KEEP_ALIVE:
        return LeaseKeepAliveRequest(
            *_fields(body, "lease_keep_alive", [("lease_ids", _uint_list, _REQUIRED)])
        )
    if op_type == OpType.LEASE_CHECKPOINT:
        return LeaseCheckpointRequest(
            *_fields(body, "lease_checkpoint", [("items", _checkpoint_items, _REQUIRED)])
        )
    if op_type == OpType.LEASE_EXPIRE:
        return LeaseExpireRequest(
            *_fields(
                body,
                "lease_expire",
                [("lease_id", _uint, _REQUIRED), ("refreshed_index", _uint, _REQUIRED)],
            )
        )
    raise InvalidArgument(f"unknown command op type {op_type}")


def decode_command(data: bytes) -> Command:
    """Parse log entry data; :class:`InvalidArgument` if it is malformed in any way."""
    if not data:
        return Command(NoopRequest())
    obj = unpack(data)
    if type(obj) is list and obj and type(obj[0]) is int and obj[0] != COMMAND_VERSION:
        raise InvalidArgument(f"unsupported command version {obj[0]} (this replica reads {COMMAND_VERSION})")
    _version, op_type, timestamp, session_id, seq, body, fence = _fields(
        obj,
        "command",
        [
            ("version", _uint, _REQUIRED),
            ("op_type", _uint, _REQUIRED),
            ("timestamp", _uint, _REQUIRED),
            ("session_id", _uint, _REQUIRED),
            ("seq", _uint, _REQUIRED),
            ("body", _list, _REQUIRED),
            ("fence", _id, None),
        ],
    )
    if session_id and not seq:
        raise InvalidArgument(f"command for session {session_id} has seq 0; seq starts at 1")
    if seq and not session_id:
        raise InvalidArgument(f"command has seq {seq} but no session")
    return Command(_decode_request(op_type, body), timestamp, session_id, seq, _decode_fence(fence))


# ------------------------------------------------------------------------------ records and responses


def encode_kv(kv: KeyValue) -> list[Any]:
    """``[key, value, create_revision, mod_revision, version, lease]``."""
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease]


def decode_kv(obj: Any) -> KeyValue:
    """Inverse of :func:`encode_kv`; ``InvalidArgument`` if malformed."""
    fields = _fields(
        obj,
        "kv",
        [
            ("key", _bytes, _REQUIRED),
            ("value", _bytes, _REQUIRED),
            ("create_revision", _uint, _REQUIRED),
            ("mod_revision", _uint, _REQUIRED),
            ("version", _uint, _REQUIRED),
            ("lease", _uint, _REQUIRED),
        ],
    )
    return KeyValue(*fields)


def _opt_kv(obj: Any) -> KeyValue | None:
    return None if obj is None else decode_kv(obj)


def encode_event(ev: Event) -> list[Any]:
    """``[type, kv, prev_kv|nil, sub]``."""
    return [int(ev.type), encode_kv(ev.kv), None if ev.prev_kv is None else encode_kv(ev.prev_kv), ev.sub]


def decode_event(obj: Any) -> Event:
    """Inverse of :func:`encode_event`; ``InvalidArgument`` if malformed."""
    typ, kv, prev, sub = _fields(
        obj,
        "event",
        [
            ("type", _uint, _REQUIRED),
            ("kv", _list, _REQUIRED),
            ("prev_kv", _id, _REQUIRED),
            ("sub", _uint, _REQUIRED),
        ],
    )
    if typ not in (EventType.PUT, EventType.DELETE):
        raise InvalidArgument(f"unknown event type {typ}")
    return Event(EventType(typ), decode_kv(kv), _opt_kv(prev), sub)


def _encode_response_body(resp: Response) -> list[Any]:
    if isinstance(resp, ErrorResponse):
        return [int(ResponseType.ERROR), resp.revision, error_to_wire(resp.error)]
    if isinstance(resp, PutResponse):
        return [
            int(ResponseType.PUT),
            resp.revision,
            None if resp.prev_kv is None else encode_kv(resp.prev_kv),
        ]
    if isinstance(resp, RangeResponse):
        return [
            int(ResponseType.RANGE),
            resp.revision,
            [encode_kv(kv) for kv in resp.kvs],
            resp.count,
            resp.more,
        ]
    if isinstance(resp, DeleteRangeResponse):
        return [
            int(ResponseType.DELETE_RANGE),
            resp.revision,
            resp.deleted,
            [encode_kv(kv) for kv in resp.prev_kvs],
        ]
    if isinstance(resp, TxnResponse):
        return [
            int(ResponseType.TXN),
            resp.revision,
            resp.succeeded,
            [_encode_response_body(r) for r in resp.responses],
        ]
    if isinstance(resp, CompactResponse):
        return [int(ResponseType.COMPACT), resp.revision]
    if isinstance(resp, SessionResponse):
        return [int(ResponseType.SESSION), resp.revision, resp.session_id]
    if isinstance(resp, LeaseGrantResponse):
        return [int(ResponseType.LEASE_GRANT), resp.revision, resp.lease_id, resp.ttl_ms]
    if isinstance(resp, LeaseKeepAliveResponse):
        return [
            int(ResponseType.LEASE_KEEP_ALIVE),
            resp.revision,
            [list(r) for r in resp.renewed],
            list(resp.missing),
        ]
    if isinstance(resp, LeaseRevokeResponse):
        return [int(ResponseType.LEASE_REVOKE), resp.revision, resp.deleted, resp.revoked]
    return [int(ResponseType.NOOP), resp.revision]


def encode_response_obj(resp: Response) -> list[Any]:
    """The msgpack-able array form of ``resp`` (``[tag, revision, ...]``)."""
    return _encode_response_body(resp)


def encode_response(resp: Response) -> bytes:
    """``resp`` as msgpack bytes."""
    return pack(_encode_response_body(resp))


def decode_response_obj(obj: Any) -> Response:
    """Inverse of :func:`encode_response_obj`; ``InvalidArgument`` if malformed."""
    items = _list(obj, "response")
    if len(items) < 2:
        raise InvalidArgument("response too short")
    tag = _uint(items[0], "response.tag")
    rev = _uint(items[1], "response.revision")
    rest = items[2:]

    def need(n: int) -> None:
        if len(rest) != n:
            raise InvalidArgument(
                f"response type {tag} has {len(rest)} fields after the header, expected {n}"
            )

    if tag == ResponseType.ERROR:
        need(1)
        return ErrorResponse(rev, error_from_wire(rest[0]))
    if tag == ResponseType.PUT:
        need(1)
        return PutResponse(rev, _opt_kv(rest[0]))
    if tag == ResponseType.RANGE:
        need(3)
        kvs = tuple(decode_kv(kv) for kv in _list(rest[0], "range.kvs"))
        return RangeResponse(rev, kvs, _uint(rest[1], "range.count"), _bool(rest[2], "range.more"))
    if tag == ResponseType.DELETE_RANGE:
        need(2)
        prev = tuple(decode_kv(kv) for kv in _list(rest[1], "delete.prev_kvs"))
        return DeleteRangeResponse(rev, _uint(rest[0], "delete.deleted"), prev)
    if tag == ResponseType.TXN:
        need(2)
        subs: list[OpResponse] = []
        for sub_obj in _list(rest[1], "txn.responses"):
            sub = decode_response_obj(sub_obj)
            if not isinstance(sub, PutResponse | RangeResponse | DeleteRangeResponse):
                raise InvalidArgument(f"txn response holds a {type(sub).__name__}")
            subs.append(sub)
        return TxnResponse(rev, _bool(rest[0], "txn.succeeded"), tuple(subs))
    if tag == ResponseType.COMPACT:
        need(0)
        return CompactResponse(rev)
    if tag == ResponseType.SESSION:
        need(1)
        return SessionResponse(rev, _uint(rest[0], "session.session_id"))
    if tag == ResponseType.NOOP:
        need(0)
        return NoopResponse(rev)
    if tag == ResponseType.LEASE_GRANT:
        need(2)
        return LeaseGrantResponse(
            rev, _uint(rest[0], "lease_grant.lease_id"), _uint(rest[1], "lease_grant.ttl_ms")
        )
    if tag == ResponseType.LEASE_KEEP_ALIVE:
        need(2)
        renewed = []
        for i, item in enumerate(_list(rest[0], "lease_keep_alive.renewed")):
            lid, ttl = _fields(
                item,
                f"lease_keep_alive.renewed[{i}]",
                [("lease_id", _uint, _REQUIRED), ("ttl_ms", _uint, _REQUIRED)],
            )
            renewed.append((lid, ttl))
        return LeaseKeepAliveResponse(rev, tuple(renewed), _uint_list(rest[1], "lease_keep_alive.missing"))
    if tag == ResponseType.LEASE_REVOKE:
        need(2)
        return LeaseRevokeResponse(
            rev, _uint(rest[0], "lease_revoke.deleted"), _bool(rest[1], "lease_revoke.revoked")
        )
    raise InvalidArgument(f"unknown response type {tag}")


def decode_response(data: bytes) -> Response:
    """Inverse of :func:`encode_response`."""
    return decode_response_obj(unpack(data))
