"""Plain data types shared by the Raft core, its host and durable storage.

Everything here is an immutable value (or a small mutable record owned by one party) with no behaviour
beyond validation. Node ids are positive integers; ``NONE`` (0) means "no node". Log indices start at 1;
index 0 with term 0 is the empty log's sentinel (Raft paper, Figure 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""The id that means "no node" (no leader known, no vote cast)."""


class EntryType(IntEnum):
    """What a log entry carries. Append-only: values are persisted in the WAL."""

    NORMAL = 0
    """Application data for the state machine (empty data is a leader's no-op)."""
    CONF_CHANGE = 1
    """A membership change, encoded by :func:`coterie.node.raft.confchange.encode`."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. Invariant: ``index >= 1`` and ``term >= 1`` for every real entry."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """State that must be durable before any message that depends on it is sent (Figure 2).

    ``term`` and ``vote`` guarantee one vote per term across crashes; ``commit`` lets a restarted node
    re-apply its committed prefix without waiting for a leader.
    """

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership in force at some log index: voters and learners (thesis 4.1, 4.2.1)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if set(self.voters) & set(self.learners):
            raise ValueError(f"a node cannot be both voter and learner: {self}")


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Where a snapshot sits in the log: it replaces every entry up to and including ``index``."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state machine image at ``metadata.index`` (thesis chapter 5). ``data`` is opaque to the core."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0


class ConfChangeType(IntEnum):
    """Single-server membership changes (thesis 4.1). Append-only: persisted inside log entries."""

    ADD_VOTER = 0
    """Add a new voter, or promote an existing learner to voter."""
    ADD_LEARNER = 1
    """Add a non-voting member that receives the log (thesis 4.2.1)."""
    REMOVE = 2
    """Remove a voter or learner."""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; takes effect when its entry is applied, one at a time."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""


class MessageType(IntEnum):
    """Raft messages between peers. Append-only: values travel on the wire."""

    APP = 0
    """AppendEntries (Figure 2): ``index``/``log_term`` name the entry before ``entries``."""
    APP_RESP = 1
    """Reply to APP or to a whole snapshot. ``index`` is the last matching index, or the rejected one."""
    VOTE = 2
    """RequestVote: ``index``/``log_term`` describe the candidate's last entry."""
    VOTE_RESP = 3
    PRE_VOTE = 4
    """PreVote (thesis 9.6): ``term`` is the term the sender would campaign in; no state changes."""
    PRE_VOTE_RESP = 5
    HEARTBEAT = 6
    """Leader liveness and commit propagation; ``read_seq`` carries the ReadIndex round (thesis 6.4)."""
    HEARTBEAT_RESP = 7
    SNAP = 8
    """One chunk of an InstallSnapshot (thesis 5.1.1): ``snap_offset``, ``snap_done``, ``snapshot``."""
    SNAP_RESP = 9
    """Acknowledges a non-final snapshot chunk: ``snap_offset`` is the next offset expected."""
    TIMEOUT_NOW = 10
    """Leadership transfer (thesis 3.10): the receiver campaigns at once, skipping PreVote."""
    READ_INDEX = 11
    """A follower forwards a read request to the leader; ``context`` identifies it."""
    READ_INDEX_RESP = 12
    """The leader's answer: ``index`` is the read index, or ``reject`` if it cannot serve reads."""


@dataclass(frozen=True, slots=True)
class Message:
    """A message between two Raft peers. Fields not used by a message type keep their defaults."""

    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    read_seq: int = 0
    snapshot: SnapshotMetadata | None = None
    snap_offset: int = 0
    snap_data: bytes = b""
    snap_done: bool = False
    transfer: bool = False
    """Set on VOTE messages of a campaign triggered by TIMEOUT_NOW: voters ignore their leader lease."""


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the host may want to observe; never persisted."""

    leader: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied up to ``index``."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """Work the host must do, in this order (etcd raft's Ready; thesis 10.2.1):

    1. persist ``snapshot`` (if any), then ``entries`` and ``hard_state`` (if any) with one fsync;
    2. send ``messages`` (these may also be sent before step 1: they do not depend on it);
    3. send ``persisted_messages`` (only after step 1 returned);
    4. apply ``snapshot`` to the state machine, then ``committed_entries`` in order;
    5. serve ``read_states`` once applied up to their index;
    6. call :meth:`RawNode.advance` with this Ready.

    Invariant: ``entries`` are contiguous, and the first one may overwrite (truncate) a conflicting
    suffix of what was persisted before, which storage must honour.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    persisted_messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool
    """Whether step 1 needs an fsync: new entries, a snapshot, or a new term or vote. A change of
    the commit index alone may be written without one (it is recovered from the leader)."""
