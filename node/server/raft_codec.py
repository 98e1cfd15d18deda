"""Raft messages <-> :mod:`coterie.v1.raft_pb2`, for the peer transport (the hot path).

:func:`batch_to_pb` packs the messages one node sends to one peer; :func:`batch_from_pb` unpacks
what a peer sent. Both directions are used in production: a node encodes what it sends and decodes
what it receives. Entries, snapshot metadata and memberships travel inside messages. (A membership
change travels as ``confchange.encode()`` bytes in a log entry, never as ``raft_pb2.ConfChange``.)

Anything malformed that arrives from the network (an unknown message or entry type, a SNAP message
without ``snapshot`` metadata, a membership that lists a node twice, a message whose sender is not
the batch's) raises :class:`InvalidArgument` with a message naming the field. Encoding trusts its
input (it comes from this process).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from coterie.v1 import raft_pb2

from ..raft.types import ConfState, Entry, EntryType, Message, MessageType, SnapshotMetadata
from ..statemachine.errors import InvalidArgument

__all__ = ["batch_from_pb", "batch_to_pb"]

# Enum lookups by wire number. proto3 enums are open: a parsed message may hold any int32, so every
# lookup goes through one of these dicts and a KeyError means "unknown value".
_MESSAGE_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType}
_ENTRY_TYPES: dict[int, EntryType] = {int(t): t for t in EntryType}


def batch_to_pb(cluster_id: str, from_id: int, messages: Iterable[Message]) -> raft_pb2.MessageBatch:
    """Messages from ``from_id`` (each one's ``frm``) to one peer, as one batch."""
    batch = raft_pb2.MessageBatch(cluster_id=cluster_id, from_id=from_id)
    add = batch.messages.add
    for m in messages:
        _fill_message(add(), m)
    return batch


def batch_from_pb(batch: raft_pb2.MessageBatch) -> list[Message]:
    """The messages of a batch, in order. :class:`InvalidArgument` if one is malformed or claims a
    sender other than the batch's ``from_id``. (Checking ``cluster_id`` is the caller's job.)"""
    msgs = [_message_from_pb(pb, f"MessageBatch.messages[{i}]") for i, pb in enumerate(batch.messages)]
    sender = batch.from_id
    for i, m in enumerate(msgs):
        if m.frm != sender:
            raise InvalidArgument(
                f"MessageBatch.messages[{i}].from_id: {m.frm} differs from the batch's from_id {sender}"
            )
    return msgs


def _fill_message(pb: raft_pb2.RaftMessage, m: Message) -> None:
    # Only non-default fields are set: most messages (heartbeats, responses) use a handful.
    pb.type = cast(raft_pb2.MessageType, m.type)
    pb.to = m.to
    pb.from_id = m.frm
    if m.term:
        pb.term = m.term
    if m.log_term:
        pb.log_term = m.log_term
    if m.index:
        pb.index = m.index
    if m.entries:
        add = pb.entries.add
        for e in m.entries:
            add(term=e.term, index=e.index, type=e.type, data=e.data)
    if m.commit:
        pb.commit = m.commit
    if m.reject:
        pb.reject = True
    if m.reject_hint:
        pb.reject_hint = m.reject_hint
    if m.context:
        pb.context = m.context
    if m.read_seq:
        pb.read_seq = m.read_seq
    if m.snapshot is not None:
        s = m.snapshot
        ps = pb.snapshot
        ps.index = s.index
        ps.term = s.term
        ps.conf_state.SetInParent()
        ps.conf_state.voters.extend(s.conf_state.voters)
        ps.conf_state.learners.extend(s.conf_state.learners)
    if m.snap_offset:
        pb.snap_offset = m.snap_offset
    if m.snap_data:
        pb.snap_data = m.snap_data
    if m.snap_done:
        pb.snap_done = True
    if m.transfer:
        pb.transfer = True


def _message_from_pb(pb: raft_pb2.RaftMessage, what: str) -> Message:
    try:
        typ = _MESSAGE_TYPES[pb.type]
        et = _ENTRY_TYPES
        entries = tuple([Entry(e.term, e.index, et[e.type], e.data) for e in pb.entries])
    except KeyError:
        raise _bad_message(pb, what) from None
    if pb.HasField("snapshot"):
        snapshot: SnapshotMetadata | None = _snapshot_metadata_from_pb(pb.snapshot, f"{what}.snapshot")
    elif typ is MessageType.SNAP:
        raise InvalidArgument(f"{what}.snapshot: missing on a SNAP message")
    else:
        snapshot = None
    return Message(
        typ,
        pb.to,
        pb.from_id,
        pb.term,
        pb.log_term,
        pb.index,
        entries,
        pb.commit,
        pb.reject,
        pb.reject_hint,
        pb.context,
        pb.read_seq,
        snapshot,
        pb.snap_offset,
        pb.snap_data,
        pb.snap_done,
        pb.transfer,
    )


def _bad_message(pb: raft_pb2.RaftMessage, what: str) -> InvalidArgument:
    if pb.type not in _MESSAGE_TYPES:
        return InvalidArgument(f"{what}.type: unknown message type {pb.type}")
    for i, e in enumerate(pb.entries):
        if e.type not in _ENTRY_TYPES:
            return InvalidArgument(f"{what}.entries[{i}].type: unknown entry type {e.type}")
    return InvalidArgument(f"{what}: malformed")  # pragma: no cover - one of the above holds


def _snapshot_metadata_from_pb(pb: raft_pb2.SnapshotMetadata, what: str) -> SnapshotMetadata:
    # An absent conf_state is the empty membership; a node in both lists is malformed.
    try:
        conf_state = ConfState(tuple(pb.conf_state.voters), tuple(pb.conf_state.learners))
    except ValueError as e:
        raise InvalidArgument(f"{what}.conf_state: {e}") from None
    return SnapshotMetadata(pb.index, pb.term, conf_state)
