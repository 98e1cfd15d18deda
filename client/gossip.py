"""The gossip view of one member (``Cluster.Members``): :class:`GossipView`, :class:`GossipMember` and
:class:`GossipMemberEvent`, and their conversion from protobuf. What ``AsyncClient.members`` returns
and ``coterie members`` prints.

Gossip (SWIM + Lifeguard) is each member's own, eventually consistent opinion of who is alive: two
members may disagree for a few seconds, and a member's view says nothing about the Raft
configuration (``member_list``) or leadership (``status``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coterie.v1 import cluster_pb2

__all__ = ["GossipMember", "GossipMemberEvent", "GossipView", "view_from_pb"]

_STATES = {cluster_pb2.GOSSIP_ALIVE: "alive", cluster_pb2.GOSSIP_SUSPECT: "suspect",
           cluster_pb2.GOSSIP_DEAD: "dead", cluster_pb2.GOSSIP_LEFT: "left"}


@dataclass(frozen=True, slots=True)
class GossipMemberEvent:
    """A change of a member's state, as the answering member learnt it."""

    kind: str
    """join, update, suspect, alive, dead or leave."""
    by: str
    """Who caused it: the suspecter, the member that declared it dead, or the member itself."""
    at: float
    """Wall-clock Unix seconds (the answering member's clock)."""
    incarnation: int
    confirmations: tuple[str, ...] = ()
    """For dead: the members that had confirmed the suspicion."""


@dataclass(frozen=True, slots=True)
class GossipMember:
    name: str
    addr: str
    """Its gossip address (HOST:PORT)."""
    state: str
    """alive, suspect, dead or left."""
    incarnation: int
    meta: dict[str, str]
    """Its tags: name, client_addr, peer_addr, role (Raft), version."""
    since: float
    """Wall-clock Unix seconds of its last state change (as the answering member saw it)."""
    by: str
    """Who caused the last state change."""
    events: tuple[GossipMemberEvent, ...] = ()
    """The last changes seen, oldest first (bounded)."""
    suspected_by: str = ""
    """While suspect: who suspected it first."""
    confirmed_by: tuple[str, ...] = ()
    """While suspect: who confirmed the suspicion since."""


@dataclass(frozen=True, slots=True)
class GossipView:
    """One member's gossip view: ``name`` answered; ``members`` starts with itself."""

    name: str
    members: tuple[GossipMember, ...]
    stats: dict[str, int] = field(default_factory=dict)
    """Its gossip counters (packets, probes, ``dropped_*`` malformed input, ``host_*``)."""

    def member(self, name: str) -> GossipMember | None:
        return next((m for m in self.members if m.name == name), None)


def view_from_pb(pb: Any) -> GossipView:
    members = tuple(
        GossipMember(
            name=m.name, addr=m.addr, state=_STATES.get(m.state, str(m.state)), incarnation=m.incarnation,
            meta=dict(m.meta), since=m.since_unix, by=m.by,
            events=tuple(GossipMemberEvent(e.kind, e.by, e.at_unix, e.incarnation, tuple(e.confirmations))
                         for e in m.events),
            suspected_by=m.suspected_by, confirmed_by=tuple(m.confirmed_by))
        for m in pb.members)
    return GossipView(name=pb.name, members=members, stats={k: int(v) for k, v in pb.stats.items()})
