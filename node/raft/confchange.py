"""Encoding of single-server membership changes carried in CONF_CHANGE log entries (thesis 4.1)."""

from __future__ import annotations

import msgpack

from .types import ConfChange, ConfChangeType, ConfState

_VERSION = 1


def encode(cc: ConfChange) -> bytes:
    """Serialise a change for a log entry: msgpack ``[version, type, node_id, context]``."""
    return msgpack.packb([_VERSION, int(cc.type), cc.node_id, cc.context], use_bin_type=True)


def decode(data: bytes) -> ConfChange:
    """Inverse of :func:`encode`. Raises ``ValueError`` on malformed data."""
    try:
        obj = msgpack.unpackb(data, raw=False)
        version, typ, node_id, context = obj
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"malformed conf change entry: {exc}") from exc
    if version != _VERSION or not isinstance(node_id, int) or node_id <= 0:
        raise ValueError(f"malformed conf change entry: {obj!r}")
    return ConfChange(ConfChangeType(typ), node_id, bytes(context))


def apply(cs: ConfState, cc: ConfChange) -> ConfState:
    """The membership after ``cc``. Idempotent where it can be (re-adding a voter is a no-op)."""
    voters = [v for v in cs.voters if v != cc.node_id]
    learners = [v for v in cs.learners if v != cc.node_id]
    if cc.type == ConfChangeType.ADD_VOTER:
        voters.append(cc.node_id)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        if cc.node_id in cs.voters:
            # Demoting a voter is not a single-server step we support; keep it a voter.
            voters.append(cc.node_id)
        else:
            learners.append(cc.node_id)
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
