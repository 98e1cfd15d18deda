"""Typed outcomes of the Raft core.

``InvariantViolation`` is a bug (ours); ``ProposalDropped`` and its subclasses are protocol outcomes the
caller handles, each carrying the leader this node knows of (``NONE`` when unknown) so a client can follow
the hint (thesis 6.2).
"""

from __future__ import annotations

from .types import NONE


class RaftError(Exception):
    """Base class of every error the core raises."""


class InvariantViolation(RaftError):
    """A broken internal invariant: a bug in the core or its host, never a network or user condition."""


class ProposalDropped(RaftError):
    """A proposal or request that cannot be accepted now. It was not appended; retrying may succeed."""

    reason = "proposal dropped"

    def __init__(self, leader_hint: int = NONE, detail: str = "") -> None:
        self.leader_hint = leader_hint
        msg = self.reason if not detail else f"{self.reason}: {detail}"
        if leader_hint != NONE:
            msg += f" (leader is {leader_hint})"
        super().__init__(msg)


class NotLeader(ProposalDropped):
    """This node is not the leader; ``leader_hint`` names the leader if known."""

    reason = "not the leader"


class TransferInProgress(ProposalDropped):
    """The leader is handing leadership over (thesis 3.10) and accepts no proposals meanwhile."""

    reason = "leadership transfer in progress"


class ConfChangeInProgress(ProposalDropped):
    """Another membership change has not been applied yet; only one may be pending (thesis 4.1)."""

    reason = "a membership change is already pending"


class InvalidConfChange(ProposalDropped):
    """The membership change makes no sense for the current configuration."""

    reason = "invalid membership change"


class NotMember(ProposalDropped):
    """This node is not (or no longer) a member of the cluster."""

    reason = "not a member of the cluster"
