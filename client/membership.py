"""Cluster membership for :class:`~coterie.client.Client` and :class:`~coterie.client.AsyncClient`:
the :class:`Member` type and the request and response conversions both clients share.

A membership change is an admin call that only the leader serves (the client follows the leader
hint in the FAILED_PRECONDITION answer of a follower) and that returns once the change is committed.
It is not retried after an unknown outcome: a retried MemberAdd could fail with ALREADY_EXISTS and
a retried MemberRemove with NOT_FOUND although the first attempt succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coterie.v1 import cluster_pb2

__all__ = ["Member", "add_request", "member_from_pb", "members_from_pb"]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster. An address is ``""`` while the members do not know it yet."""

    id: int
    name: str
    peer_addr: str
    """host:port of its Raft peer listener."""
    client_addr: str
    """host:port of its client services; give it to a client."""
    is_learner: bool
    """A learner receives the log but does not vote; promote it once it has caught up."""


def member_from_pb(pb: Any) -> Member:
    return Member(int(pb.id), pb.name, pb.peer_addr, pb.client_addr, bool(pb.is_learner))


def members_from_pb(pbs: Iterable[Any]) -> list[Member]:
    """Members sorted by id."""
    return sorted((member_from_pb(m) for m in pbs), key=lambda m: m.id)


def add_request(peer_addr: str, *, name: str = "", client_addr: str = "", learner: bool = False,
                member_id: int = 0) -> Any:
    return cluster_pb2.MemberAddRequest(peer_addr=peer_addr, name=name, client_addr=client_addr,
                                        as_learner=learner, id=member_id)
