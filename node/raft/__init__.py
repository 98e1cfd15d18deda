"""A pure Raft consensus core: no I/O, no clock, no threads, no global randomness.

The host drives a :class:`RawNode` with ``tick()``, ``step(message)``, ``propose(data)`` and
``read_index(context)``, takes a :class:`Ready`, persists / sends / applies it and calls ``advance()``.
"""

from .config import ConfigError, RaftConfig
from .errors import (
    ConfChangeInProgress,
    InvalidConfChange,
    InvariantViolation,
    NotLeader,
    NotMember,
    ProposalDropped,
    RaftError,
    TransferInProgress,
)
from .rawnode import PeerStatus, RawNode, Status
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
)

__all__ = [
    "NONE",
    "ConfChange",
    "ConfChangeInProgress",
    "ConfChangeType",
    "ConfState",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "InvalidConfChange",
    "InvariantViolation",
    "Message",
    "MessageType",
    "NotLeader",
    "NotMember",
    "PeerStatus",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "Status",
    "TransferInProgress",
]
