"""What a leader knows about each follower's log, and the quorum arithmetic over it.

Modelled on etcd raft's tracker package. A follower's progress is in one of three states:

- PROBE: the leader does not know where the follower's log matches; it sends one append at a time
  and waits for the answer (or a heartbeat response) before sending the next.
- REPLICATE: the follower matches up to ``match``; the leader streams appends optimistically, at most
  ``max_inflight`` unacknowledged messages at once (flow control).
- SNAPSHOT: the follower needs entries the leader compacted; the leader streams a snapshot in chunks
  and sends nothing else until the follower reports it installed.

Invariant: ``0 <= match < next``.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from .types import Snapshot


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """The last indices of append messages sent and not yet acknowledged, oldest first."""

    __slots__ = ("_q", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque[int] = deque()

    def add(self, index: int) -> None:
        self._q.append(index)

    def free_le(self, index: int) -> None:
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.size

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()


class Progress:
    """Replication progress of one peer, as seen by the leader."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snap_offset",
        "snapshot",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot: Snapshot | None = None
        self.snap_offset = 0
        self.recent_active = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot = None
        self.snap_offset = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot.metadata.index
        self.snapshot = snapshot

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged ``n``; returns whether ``match`` grew."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append whose previous index was ``rejected``.

        Returns False for a stale rejection (one that no longer applies to what we sent).
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.name}, match={self.match}, next={self.next}, "
            f"inflight={self.inflights.count()}, learner={self.is_learner})"
        )


def quorum_index(voters: list[int] | tuple[int, ...] | set[int], match: dict[int, int]) -> int:
    """The largest index replicated on a majority of ``voters`` (Figure 2, leader rule 4)."""
    if not voters:
        return 0
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[len(acked) // 2]


class VoteResult(IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def vote_result(voters: tuple[int, ...] | set[int], votes: dict[int, bool]) -> VoteResult:
    """Tally the votes cast by ``voters`` (votes from non-voters are ignored)."""
    if not voters:
        return VoteResult.LOST
    granted = rejected = 0
    for v in voters:
        cast = votes.get(v)
        if cast is True:
            granted += 1
        elif cast is False:
            rejected += 1
    q = len(voters) // 2 + 1
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING
