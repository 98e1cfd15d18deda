"""Configuration of one node, in one place. Every field states its unit, default and trade-off.

- :class:`DriverConfig`: what the driver (:mod:`.driver`) needs: tick length, back-pressure bound,
  snapshot cadence, read timeout. The single source of those defaults.
- :class:`NodeConfig`: what ``coterie node`` takes (identity, addresses, the initial cluster and the
  tunables). Its tunables default to :class:`DriverConfig`'s and :class:`RaftConfig`'s fields, and
  the CLI's ``node`` options default to :class:`NodeConfig`'s (``NodeConfig.tick_interval``, ...),
  so a default is written once.

Both validate by raising :class:`NodeConfigError` naming the field (or flag) and the limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gossip import GossipConfig
from ..raft.config import ConfigError, RaftConfig
from .lease_timer import DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_EXPIRE_RETRY

__all__ = ["DEFAULT_GOSSIP_PORT", "DriverConfig", "NodeConfig", "NodeConfigError", "parse_initial_cluster"]

DEFAULT_GOSSIP_PORT = 7946
"""The gossip port when ``--join`` is given without ``--gossip-addr`` (hashicorp/memberlist's)."""


class NodeConfigError(ValueError):
    """The node's configuration or data directory is unusable; the message says why and what to do."""


def _default_of(cls: type, name: str) -> Any:
    """The declared default of dataclass field ``name`` of ``cls`` (for dataclasses with slots, whose
    class attributes are not the defaults)."""
    for f in dataclasses.fields(cls):
        if f.name == name and f.default is not dataclasses.MISSING:
            return f.default
    raise LookupError(f"{cls.__name__}.{name} has no default")  # pragma: no cover - a typo here


@dataclass(frozen=True)
class DriverConfig:
    """The driver's settings (one per node)."""

    tick_interval: float = 0.1
    """Seconds per Raft tick (default 0.1). Timeouts are counted in ticks: with ``election_tick=10``
    a follower campaigns after 1-2 s of silence, and the leader heartbeats every tick. Shorter:
    faster failover and heartbeats, more wake-ups and traffic, more spurious elections when the event
    loop or the network stalls for a few ticks."""

    max_pending_proposals: int = 4096
    """Proposals awaiting their outcome before new ones are refused with ``Overloaded``
    (RESOURCE_EXHAUSTED), default 4096. Larger: absorbs bigger bursts, at the price of memory and of
    latency for everything queued behind; smaller: clients back off sooner."""

    snapshot_entries: int = 10_000
    """Applied entries between state machine snapshots (and WAL compaction), default 10 000.
    Smaller: a shorter WAL and faster restarts, more snapshot writes (each one writes the whole
    state)."""

    snapshot_keep: int = 1_000
    """Log entries kept behind a snapshot, default 1 000, so a slightly lagging follower catches up
    with entries instead of a whole snapshot. Larger: fewer snapshot transfers, a longer WAL."""

    read_timeout: float = 3.0
    """Seconds a ReadIndex request may wait for the leader's answer, default 3 (a forwarded request
    can be lost with the leader) before it fails with ``ReadTimeout``; retrying it is always safe.
    Shorter: a read fails over sooner; too short and reads fail under a slow but healthy leader."""

    lease_checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL
    """Seconds between two lease checkpoints proposed by the leader (default 5; one log entry with
    every lease's remaining TTL). Shorter: a restarted node that is elected before the next
    checkpoint extends leases by less (this bounds that extension), at the price of more log
    traffic with many leases. See :mod:`.lease_timer`."""

    lease_expire_retry: float = DEFAULT_EXPIRE_RETRY
    """Seconds before the leader proposes a lease expiry again when the first proposal has not been
    applied (lost in a leader change, say), default 1. Shorter: a lost expiry is retried sooner,
    more duplicate (no-op) expire entries under a slow commit."""

    def validate(self) -> None:
        """Raise :class:`NodeConfigError` naming the first field out of range."""
        if not self.lease_checkpoint_interval > 0:
            raise NodeConfigError(
                f"lease_checkpoint_interval must be positive seconds, got {self.lease_checkpoint_interval}")
        if not self.lease_expire_retry > 0:
            raise NodeConfigError(
                f"lease_expire_retry must be positive seconds, got {self.lease_expire_retry}")
        if not self.tick_interval > 0:
            raise NodeConfigError(f"tick_interval must be positive seconds, got {self.tick_interval}")
        if self.max_pending_proposals < 1:
            raise NodeConfigError(
                f"max_pending_proposals must be at least 1, got {self.max_pending_proposals}")
        if self.snapshot_entries < 1:
            raise NodeConfigError(f"snapshot_entries must be at least 1, got {self.snapshot_entries}")
        if self.snapshot_keep < 0:
            raise NodeConfigError(f"snapshot_keep must not be negative, got {self.snapshot_keep}")
        if not self.read_timeout > 0:
            raise NodeConfigError(f"read_timeout must be positive seconds, got {self.read_timeout}")


@dataclass(frozen=True)
class NodeConfig:
    """One node's settings, as ``coterie node`` takes them (the flag of each field is named)."""

    name: str
    """This node's name in ``initial_cluster`` (``--name``, required)."""
    data_dir: Path
    """Directory of the WAL, snapshots and ``meta.json`` (``--data-dir``, required)."""
    client_addr: str
    """HOST:PORT the KV, Session and Cluster services listen on (``--client-addr``, required)."""
    peer_addr: str
    """HOST:PORT of Raft traffic between nodes (``--peer-addr``, required); must be this node's
    address in ``initial_cluster``."""
    initial_cluster: dict[str, str]
    """Every initial member's name and peer address (``--initial-cluster n1=host:port,...``)."""

    advertise_client_addr: str = ""
    """HOST:PORT clients are told to use for this node (``--advertise-client-addr``, like etcd's
    ``--advertise-client-urls``): published in the member address book (``member list``, ``status``,
    a client's discovery of the other members) and in the leader hints of redirects. Default ""
    means :attr:`client_addr`. Set it when clients reach the node at another address than the one it
    binds, e.g. a container binding ``0.0.0.0:7001`` whose port is published on the host as
    ``127.0.0.1:7001``; an address clients cannot reach makes them try it in vain."""

    @property
    def advertised_client_addr(self) -> str:
        """The client address published to clients: :attr:`advertise_client_addr`, else
        :attr:`client_addr`."""
        return self.advertise_client_addr or self.client_addr

    initial_cluster_state: str = "new"
    """``new`` (default): bootstrap the cluster of ``initial_cluster``. ``existing``: join a running
    cluster this node was added to with MemberAdd (``initial_cluster`` then lists members to ask, and
    this node)."""

    join_timeout: float = 30.0
    """Seconds an ``existing`` node keeps asking the members for its id before giving up (default
    30). Longer: tolerates a slower MemberAdd or an unavailable cluster; shorter: a mistake (a node
    never added) is reported sooner."""

    tick_interval: float = DriverConfig.tick_interval
    """Seconds per Raft tick (``--tick-ms``, in ms there); :attr:`DriverConfig.tick_interval` has
    the default and the trade-off."""

    election_tick: int = _default_of(RaftConfig, "election_tick")
    """Ticks before a follower without a leader campaigns, randomized up to twice this
    (``--election-ticks``); :attr:`RaftConfig.election_tick` has the default and the trade-off."""

    snapshot_entries: int = DriverConfig.snapshot_entries
    """Applied entries between snapshots (``--snapshot-entries``); see
    :attr:`DriverConfig.snapshot_entries`."""

    snapshot_keep: int = DriverConfig.snapshot_keep
    """Log entries kept behind a snapshot (``--snapshot-keep``); see :attr:`DriverConfig.snapshot_keep`."""

    max_pending_proposals: int = DriverConfig.max_pending_proposals
    """Proposals waiting for their outcome before new ones are refused with RESOURCE_EXHAUSTED
    (``--max-pending-proposals``); see :attr:`DriverConfig.max_pending_proposals`."""

    min_lease_ttl: float = 0.0
    """Shortest lease TTL granted, seconds (``--min-lease-ttl``); a Grant asking for less gets this
    and a ``notice`` saying so. 0 (default): ``max(2 s, 2 x the longest election timeout)``, where the
    longest election timeout is ``2 x election_tick x tick_interval`` (4 s with the default 0.1 s
    ticks and 10 election ticks; 2 s with 50 ms ticks). Why: a lease must outlive a leader failover,
    during which no keep-alive can be answered; a holder that renews every TTL/3 then still gets
    one renewal through after an election, so a leader crash alone never expires a live holder's
    lease. Lower (explicitly): quicker failure detection of a dead holder, and leases lost to mere
    elections. See :meth:`effective_min_lease_ttl`."""

    metrics_addr: str = ""
    """HOST:PORT of an HTTP listener serving Prometheus metrics at ``/metrics`` (``--metrics-addr``,
    like etcd's ``--listen-metrics-urls``). Default "": no listener, and no metric is recorded
    beyond the plain counters the node keeps anyway. On: role, term, leader changes, commit and
    applied index, proposals, WAL save (fsync) and apply latency, peer batch sends, ReadIndex
    latency, leases, locks and watchers (:mod:`.metrics` lists them), at the price of a few
    microseconds per Raft batch and per read (histogram updates) and of a scrape on the event loop.
    The listener has no authentication: bind it to an address only the monitoring system reaches."""

    fault_injection: bool = False
    """Enable the peer fault-injection hooks (``--enable-fault-injection``, tests only; default off:
    they let any client of the node partition it)."""

    unsafe_local_reads: bool = False
    """BROKEN ON PURPOSE, tests only (``--unsafe-local-reads``, default off): Range reads skip
    ReadIndex, so they can be stale (the bug the Jepsen-style suite's checker must catch)."""

    gossip_addr: str = ""
    """HOST:PORT of this node's gossip (SWIM) socket, UDP and TCP on the same port
    (``--gossip-addr``; :mod:`.gossip`). Default "": gossip is off, unless :attr:`join` is given,
    which turns it on at the host of ``--peer-addr`` and port :data:`DEFAULT_GOSSIP_PORT` (7946, the
    port of hashicorp/memberlist). Gossip only observes: it adds ``coterie members`` and never starts
    an election or changes the Raft configuration."""

    join: tuple[str, ...] = ()
    """Gossip addresses (HOST:PORT) of members to join through (``--join SEED,SEED``): any one that
    answers is enough; retried with back-off until one does. Default none (this node waits to be
    joined). Giving it turns gossip on (see :attr:`gossip_addr`)."""

    gossip_profile: str = "lan"
    """The gossip timings (hidden ``--gossip-profile``): ``lan`` (default; memberlist's
    ``DefaultLANConfig``: a probe a second, 500 ms probe timeout) or ``local`` (``DefaultLocalConfig``:
    200 ms probe timeout, shorter suspicions; for one host or rack, and for tests). See
    :class:`~coterie.node.gossip.GossipConfig` for every timing and its trade-off."""

    @property
    def gossip_enabled(self) -> bool:
        """Whether this node runs gossip: ``--gossip-addr`` or ``--join`` was given."""
        return bool(self.gossip_addr or self.join)

    @property
    def effective_gossip_addr(self) -> str:
        """:attr:`gossip_addr`, else the ``--peer-addr`` host at :data:`DEFAULT_GOSSIP_PORT`."""
        if self.gossip_addr:
            return self.gossip_addr
        host = self.peer_addr.rpartition(":")[0]
        return f"{host}:{DEFAULT_GOSSIP_PORT}"

    def gossip_config(self) -> GossipConfig:
        """The gossip core's configuration for :attr:`gossip_profile`."""
        return GossipConfig.local() if self.gossip_profile == "local" else GossipConfig.lan()

    def validate(self) -> None:
        """Raise :class:`NodeConfigError` naming the first flag out of range."""
        if not self.name:
            raise NodeConfigError("--name is required")
        if self.name not in self.initial_cluster:
            raise NodeConfigError(
                f"--name {self.name!r} is not in --initial-cluster ({', '.join(self.initial_cluster)})")
        if self.initial_cluster[self.name] != self.peer_addr:
            raise NodeConfigError(
                f"--peer-addr {self.peer_addr} differs from {self.name}'s address in --initial-cluster "
                f"({self.initial_cluster[self.name]})")
        for flag, addr in (("--client-addr", self.client_addr),
                           ("--advertise-client-addr", self.advertised_client_addr)):
            _, sep, port = addr.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise NodeConfigError(f"{flag} must be HOST:PORT, got {addr!r}")
        if self.metrics_addr:
            _, sep, port = self.metrics_addr.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise NodeConfigError(f"--metrics-addr must be HOST:PORT, got {self.metrics_addr!r}")
        if self.initial_cluster_state not in ("new", "existing"):
            raise NodeConfigError(
                f"--initial-cluster-state must be 'new' or 'existing', got {self.initial_cluster_state!r}")
        if not self.join_timeout > 0:
            raise NodeConfigError(f"join timeout must be positive seconds, got {self.join_timeout}")
        if not self.tick_interval > 0:
            raise NodeConfigError(f"--tick-ms must be positive, got {self.tick_interval * 1000:g}")
        if self.max_pending_proposals < 1:
            raise NodeConfigError(
                f"--max-pending-proposals must be at least 1, got {self.max_pending_proposals}")
        if not self.min_lease_ttl >= 0 or self.min_lease_ttl > 86_400:
            raise NodeConfigError(
                f"--min-lease-ttl must be in [0, 86400] seconds (0: automatic), got {self.min_lease_ttl}")
        try:
            self.raft_config(1).validate()
        except ConfigError as exc:
            raise NodeConfigError(f"--election-ticks: {exc}") from exc
        self.driver_config().validate()
        self._validate_gossip()

    def _validate_gossip(self) -> None:
        for flag, addrs in (("--gossip-addr", (self.gossip_addr,) if self.gossip_addr else ()),
                            ("--join", self.join)):
            for addr in addrs:
                host, sep, port = addr.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                    raise NodeConfigError(f"{flag} must be HOST:PORT, got {addr!r}")
        if self.gossip_profile not in ("lan", "local"):
            raise NodeConfigError(f"--gossip-profile must be 'lan' or 'local', got {self.gossip_profile!r}")

    def driver_config(self) -> DriverConfig:
        """The driver's share of this configuration."""
        return DriverConfig(tick_interval=self.tick_interval,
                            max_pending_proposals=self.max_pending_proposals,
                            snapshot_entries=self.snapshot_entries, snapshot_keep=self.snapshot_keep)

    def effective_min_lease_ttl(self) -> float:
        """The minimum lease TTL in seconds: :attr:`min_lease_ttl`, or when that is 0,
        ``max(2, 2 x 2 x election_tick x tick_interval)``."""
        if self.min_lease_ttl > 0:
            return self.min_lease_ttl
        return max(2.0, 2 * (2 * self.election_tick * self.tick_interval))

    def raft_config(self, node_id: int) -> RaftConfig:
        """The Raft core's configuration for this node, once its id is known."""
        return RaftConfig(id=node_id, election_tick=self.election_tick)


def parse_initial_cluster(text: str) -> dict[str, str]:
    """``n1=127.0.0.1:7101,n2=...`` to a dict; :class:`NodeConfigError` on malformed input."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, addr = part.partition("=")
        if not sep or not name or ":" not in addr:
            raise NodeConfigError(f"--initial-cluster: expected NAME=HOST:PORT, got {part!r}")
        if name in out:
            raise NodeConfigError(f"--initial-cluster: {name!r} appears twice")
        out[name] = addr
    if not out:
        raise NodeConfigError("--initial-cluster is empty")
    return out
