"""Typed refusals of the node's membership operations; :func:`coterie.node.server.status.error_status`
maps them to gRPC statuses (the status each class gets is named in its docstring)."""

from __future__ import annotations

__all__ = [
    "InvalidMember",
    "LearnerNotReady",
    "MemberExists",
    "MemberNotFound",
    "MemberRemoved",
    "MembershipError",
]


class MembershipError(Exception):
    """A refused membership request (FAILED_PRECONDITION unless a subclass says otherwise)."""


class MemberNotFound(MembershipError):
    """The member id is not in the configuration (NOT_FOUND)."""


class MemberExists(MembershipError):
    """MemberAdd names an id, name or peer address already in use (ALREADY_EXISTS)."""


class InvalidMember(MembershipError):
    """A malformed membership request, or an id that was removed (INVALID_ARGUMENT)."""


class LearnerNotReady(MembershipError):
    """MemberPromote of a learner that is not caught up or not reachable (FAILED_PRECONDITION)."""


class MemberRemoved(MembershipError):
    """The sender of a peer call was removed from the cluster (FAILED_PRECONDITION, and the peer
    transport adds the ``coterie-member-removed`` trailing metadata)."""
