"""The gossip wire codec: one version byte, then one msgpack array ``[type, field, ...]``.

Message types are an append-only :class:`MessageType` (a number is never reused). A ``COMPOUND``
message carries several encoded message bodies (``[COMPOUND, [bin, ...]]``, no nesting): that is how
broadcasts are piggybacked on pings and acks (SWIM section 4.1). :func:`decode` validates every field
(types, ranges, lengths) and raises :class:`DecodeError` with a :class:`DropReason`; the core counts
those and drops the packet, never raising to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

import msgpack

from .state import MemberState

VERSION = 1
"""The wire version (the first byte of every packet). A packet of another version is dropped."""

MAX_NAME = 256
"""Characters in a member name or address."""
MAX_META_ENTRIES = 64
MAX_META_CHARS = 512
"""Characters in one meta key or value."""
MAX_U64 = (1 << 64) - 1
MAX_INCARNATION = (1 << 62)
"""Incarnations above this are malformed; a member accused at this incarnation cannot refute (it would
overflow), so the core counts the accusation instead."""

COMPOUND_OVERHEAD = 6
"""Bytes of a compound packet besides its parts: version, array header, type, parts-array header."""
PART_OVERHEAD = 3
"""Bytes of framing per compound part (a msgpack bin header, at most 3 bytes below 64 KiB)."""


class MessageType(IntEnum):
    """Append-only: add new types at the end, never renumber."""

    PING = 1
    PING_REQ = 2
    ACK = 3
    NACK = 4
    SUSPECT = 5
    ALIVE = 6
    DEAD = 7
    PUSH_PULL = 8
    COMPOUND = 9


class DropReason(Enum):
    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    BAD_VERSION = "bad_version"
    OVERSIZED = "oversized"


class DecodeError(ValueError):
    """A packet that is not a valid message of this version."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: str
    """The name the sender means to ping: a member at a reused address that is not it ignores it."""
    source: str
    source_addr: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping ``target`` on the sender's behalf (SWIM 3.1)."""

    seq: int
    target: str
    target_addr: str
    source: str
    source_addr: str
    nack: bool
    """Send a nack if the target does not ack within the probe timeout (Lifeguard 4.1)."""


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Suspect:
    incarnation: int
    node: str
    source: str


@dataclass(frozen=True, slots=True)
class Alive:
    incarnation: int
    node: str
    addr: str
    meta: dict[str, str]


@dataclass(frozen=True, slots=True)
class Dead:
    incarnation: int
    node: str
    source: str
    """Who declared it; ``source == node`` is a graceful leave."""


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member in a push-pull state exchange."""

    name: str
    addr: str
    incarnation: int
    state: MemberState
    meta: dict[str, str]


@dataclass(frozen=True, slots=True)
class PushPull:
    reply: bool
    """False: a request, answered with the receiver's state; True: that answer."""
    source: str
    members: tuple[MemberRecord, ...]


@dataclass(frozen=True, slots=True)
class Compound:
    parts: tuple[Message, ...]


Message = Ping | PingReq | Ack | Nack | Suspect | Alive | Dead | PushPull | Compound


def _meta_out(meta: dict[str, str]) -> dict[str, str]:
    return dict(meta)


def _fields(msg: Message) -> list[Any]:
    match msg:
        case Ping():
            return [MessageType.PING, msg.seq, msg.target, msg.source, msg.source_addr]
        case PingReq():
            return [MessageType.PING_REQ, msg.seq, msg.target, msg.target_addr, msg.source,
                    msg.source_addr, msg.nack]
        case Ack():
            return [MessageType.ACK, msg.seq, msg.source]
        case Nack():
            return [MessageType.NACK, msg.seq, msg.source]
        case Suspect():
            return [MessageType.SUSPECT, msg.incarnation, msg.node, msg.source]
        case Alive():
            return [MessageType.ALIVE, msg.incarnation, msg.node, msg.addr, _meta_out(msg.meta)]
        case Dead():
            return [MessageType.DEAD, msg.incarnation, msg.node, msg.source]
        case PushPull():
            return [MessageType.PUSH_PULL, msg.reply, msg.source,
                    [[r.name, r.addr, r.incarnation, int(r.state), _meta_out(r.meta)] for r in msg.members]]
        case Compound():
            return [MessageType.COMPOUND, [encode_body(p) for p in msg.parts]]


def encode_body(msg: Message) -> bytes:
    """The msgpack body of ``msg`` without the version byte (a compound part, or a broadcast)."""
    return msgpack.packb(_fields(msg), use_bin_type=True)


def encode(msg: Message) -> bytes:
    """A complete packet: the version byte and the body."""
    return bytes((VERSION,)) + encode_body(msg)


def encode_compound(bodies: list[bytes]) -> bytes:
    """A compound packet from already encoded bodies (see :data:`COMPOUND_OVERHEAD`)."""
    return bytes((VERSION,)) + msgpack.packb([MessageType.COMPOUND, bodies], use_bin_type=True)


def _bad(detail: str) -> DecodeError:
    return DecodeError(DropReason.MALFORMED, detail)


def _int(v: object, what: str, top: int = MAX_U64) -> int:
    if type(v) is not int or not 0 <= v <= top:
        raise _bad(f"{what}: expected an integer in 0..{top}")
    return v


def _inc(v: object) -> int:
    return _int(v, "incarnation", MAX_INCARNATION)


def _str(v: object, what: str) -> str:
    if type(v) is not str or len(v) > MAX_NAME:
        raise _bad(f"{what}: expected a string of at most {MAX_NAME} characters")
    return v


def _name(v: object, what: str) -> str:
    s = _str(v, what)
    if not s:
        raise _bad(f"{what}: empty")
    return s


def _bool(v: object, what: str) -> bool:
    if type(v) is not bool:
        raise _bad(f"{what}: expected a boolean")
    return v


def _meta(v: object) -> dict[str, str]:
    if type(v) is not dict or len(v) > MAX_META_ENTRIES:
        raise _bad(f"meta: expected a map of at most {MAX_META_ENTRIES} entries")
    out: dict[str, str] = {}
    for k, val in v.items():
        if type(k) is not str or type(val) is not str or len(k) > MAX_META_CHARS \
                or len(val) > MAX_META_CHARS:
            raise _bad(f"meta: entries must be strings of at most {MAX_META_CHARS} characters")
        out[k] = val
    return out


def _arity(f: list[Any], n: int, what: str) -> None:
    if len(f) != n:
        raise _bad(f"{what}: expected {n} fields, got {len(f)}")


def _message(f: object, top: bool) -> Message:
    if type(f) is not list or not f:
        raise _bad("a message is a non-empty array")
    t = f[0]
    if type(t) is not int:
        raise _bad("message type: expected an integer")
    try:
        mt = MessageType(t)
    except ValueError:
        raise DecodeError(DropReason.UNKNOWN_TYPE, f"message type {t}") from None
    if mt is MessageType.PING:
        _arity(f, 5, "ping")
        return Ping(_int(f[1], "seq"), _name(f[2], "target"), _name(f[3], "source"), _str(f[4], "addr"))
    if mt is MessageType.PING_REQ:
        _arity(f, 7, "ping-req")
        return PingReq(_int(f[1], "seq"), _name(f[2], "target"), _str(f[3], "target addr"),
                       _name(f[4], "source"), _str(f[5], "addr"), _bool(f[6], "nack"))
    if mt is MessageType.ACK:
        _arity(f, 3, "ack")
        return Ack(_int(f[1], "seq"), _name(f[2], "source"))
    if mt is MessageType.NACK:
        _arity(f, 3, "nack")
        return Nack(_int(f[1], "seq"), _name(f[2], "source"))
    if mt is MessageType.SUSPECT:
        _arity(f, 4, "suspect")
        return Suspect(_inc(f[1]), _name(f[2], "node"), _name(f[3], "source"))
    if mt is MessageType.ALIVE:
        _arity(f, 5, "alive")
        return Alive(_inc(f[1]), _name(f[2], "node"), _str(f[3], "addr"), _meta(f[4]))
    if mt is MessageType.DEAD:
        _arity(f, 4, "dead")
        return Dead(_inc(f[1]), _name(f[2], "node"), _name(f[3], "source"))
    if mt is MessageType.PUSH_PULL:
        _arity(f, 4, "push-pull")
        if type(f[3]) is not list:
            raise _bad("push-pull members: expected an array")
        records = []
        for r in f[3]:
            if type(r) is not list or len(r) != 5:
                raise _bad("push-pull member: expected 5 fields")
            st = _int(r[3], "state")
            if st not in MemberState._value2member_map_:
                raise _bad(f"push-pull member state {st}")
            records.append(MemberRecord(_name(r[0], "name"), _str(r[1], "addr"), _inc(r[2]),
                                        MemberState(st), _meta(r[4])))
        return PushPull(_bool(f[1], "reply"), _name(f[2], "source"), tuple(records))
    # COMPOUND
    _arity(f, 2, "compound")
    if not top:
        raise _bad("nested compound")
    if type(f[1]) is not list:
        raise _bad("compound parts: expected an array")
    parts: list[Message] = []
    for b in f[1]:
        if type(b) is not bytes:
            raise _bad("compound part: expected bytes")
        part = _message(_unpack(b), top=False)
        if isinstance(part, PushPull):
            raise _bad("push-pull inside a compound")
        parts.append(part)
    return Compound(tuple(parts))


def _unpack(body: bytes) -> object:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises many types (ExtraData, FormatError, StackError, ValueError...)
        raise _bad(f"msgpack: {type(e).__name__}") from None


def decode(packet: bytes, max_size: int) -> Message:
    """Parse and validate one packet of at most ``max_size`` bytes; raise :class:`DecodeError`."""
    if len(packet) > max_size:
        raise DecodeError(DropReason.OVERSIZED, f"{len(packet)} bytes > {max_size}")
    if not packet:
        raise _bad("empty packet")
    if packet[0] != VERSION:
        raise DecodeError(DropReason.BAD_VERSION, f"version {packet[0]}")
    return _message(_unpack(packet[1:]), top=True)
