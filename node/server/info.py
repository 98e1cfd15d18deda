"""What a node knows about itself and the members of its cluster: :class:`NodeInfo` and
:class:`MemberInfo`, shared by the services (:mod:`.services`), the error mapping (:mod:`.status`,
for the leader's address in redirects) and the membership view (:mod:`.members`, which keeps
:attr:`NodeInfo.members` filled from the replicated member address book)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MemberInfo", "NodeInfo"]


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What this node knows about a cluster member beyond its Raft id."""

    id: int
    name: str = ""
    peer_addr: str = ""
    """host:port of its RaftPeer service."""
    client_addr: str = ""
    """host:port of its KV, Session and Cluster services."""


@dataclass(slots=True)
class NodeInfo:
    """The identity of the node the services run on, and the address book of its cluster.

    ``members`` maps member id to :class:`MemberInfo` (this node included, or not: it is added from
    the other fields when missing). Which members *are* in the configuration comes from the Raft
    core; this map only names them.
    """

    id: int
    name: str = ""
    cluster_id: str = ""
    client_addr: str = ""
    peer_addr: str = ""
    members: dict[int, MemberInfo] = field(default_factory=dict)
    unsafe_local_reads: bool = False
    """BROKEN ON PURPOSE, tests only: serve every Range from local state without ReadIndex, so the
    Jepsen-style suite can show that its checker catches stale reads."""

    def member(self, member_id: int) -> MemberInfo:
        """The address book entry of ``member_id`` (an empty one if unknown)."""
        m = self.members.get(member_id)
        if m is not None:
            return m
        if member_id == self.id:
            return MemberInfo(self.id, self.name, self.peer_addr, self.client_addr)
        return MemberInfo(member_id)
