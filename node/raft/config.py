"""Configuration of one Raft core. Every field states its unit, default and trade-off."""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the limit."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: int
    """This node's id, a positive integer unique in the cluster."""

    election_tick: int = 10
    """Ticks without hearing from a leader before a follower campaigns. The randomized timeout is drawn
    from ``[election_tick, 2 * election_tick)`` (5.2). Larger: fewer spurious elections on a slow network,
    slower failover. Must exceed ``heartbeat_tick`` (the thesis suggests about 10x)."""

    heartbeat_tick: int = 1
    """Ticks between leader heartbeats."""

    pre_vote: bool = True
    """Run a PreVote round before a real election (thesis 9.6), so a node that was partitioned away does not
    raise the term and depose a healthy leader when it comes back."""

    check_quorum: bool = True
    """A leader that has not heard from a majority within an election timeout steps down (thesis 6.2), and a
    follower that has heard from a leader within that time ignores vote requests (leader lease)."""

    max_inflight_msgs: int = 256
    """Append messages in flight to one follower before the leader waits for acknowledgements."""

    max_size_per_msg: int = 1 << 20
    """Bytes of entry data in one append message (at least one entry is always sent)."""

    max_committed_size_per_ready: int = 4 << 20
    """Bytes of committed entries handed to the host in one Ready (at least one entry)."""

    snapshot_chunk_size: int = 1 << 20
    """Bytes of snapshot data in one InstallSnapshot chunk."""

    max_pending_reads: int = 4096
    """ReadIndex requests the leader queues before rejecting new ones."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field out of range."""
        if self.id <= 0:
            raise ConfigError(f"id must be a positive integer, got {self.id}")
        if self.heartbeat_tick <= 0:
            raise ConfigError(f"heartbeat_tick must be >= 1, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError(
                f"election_tick ({self.election_tick}) must be greater than "
                f"heartbeat_tick ({self.heartbeat_tick})"
            )
        for name in ("max_inflight_msgs", "max_size_per_msg", "max_committed_size_per_ready",
                     "snapshot_chunk_size", "max_pending_reads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
