"""The one mapping of the node's typed errors to gRPC statuses: :func:`error_status`.

Every handler that fails (KV, Session, Cluster, the watch stream, ClusterPeer) aborts its call with
the status, details and trailing metadata this module gives:

==========================================  ======================  ==================================
error                                       status                  trailing metadata
==========================================  ======================  ==================================
InvalidArgument, LimitExceeded              INVALID_ARGUMENT        ``coterie-error-bin``
Compacted, FutureRevision                   OUT_OF_RANGE            ``coterie-error-bin``
StaleRequest                                FAILED_PRECONDITION     ``coterie-error-bin``
SessionExpired                              NOT_FOUND (kv.proto)    ``coterie-error-bin``
LeaseNotFound                               NOT_FOUND               ``coterie-error-bin``
FenceRejected                               FAILED_PRECONDITION     ``coterie-error-bin``
other KVError                               UNKNOWN                 ``coterie-error-bin``
NotLeader and other dropped proposals       UNAVAILABLE             ``coterie-leader-id``,
                                                                    ``coterie-leader-addr``
InvalidConfChange                           INVALID_ARGUMENT
ConfChangeInProgress                        FAILED_PRECONDITION
Overloaded                                  RESOURCE_EXHAUSTED
OutcomeUnknown, ReadTimeout, Stopped        UNAVAILABLE
MemberNotFound (:mod:`.errors`)             NOT_FOUND
MemberExists                                ALREADY_EXISTS
InvalidMember                               INVALID_ARGUMENT
other MembershipError                       FAILED_PRECONDITION
anything else (a bug)                       INTERNAL
==========================================  ======================  ==================================

``coterie-error-bin`` holds a serialized :class:`kv_pb2.ErrorDetail` (:func:`error_detail`): the
error's :class:`kv_pb2.ErrorCode` and its constructor arguments, from which the client rebuilds the
typed error. ``coterie-leader-id`` is the leader's member id (decimal) when known, and
``coterie-leader-addr`` its client address when :attr:`NodeInfo.members` knows it. The admin calls of
``Cluster`` answer a non-leader with FAILED_PRECONDITION instead of UNAVAILABLE, as
``cluster.proto`` documents (the ``not_leader`` argument), with the same leader metadata.
"""

from __future__ import annotations

import logging
from typing import cast

import grpc  # type: ignore[import-untyped]

from coterie.v1 import kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

from ..raft import ConfChangeInProgress, InvalidConfChange, NotLeader, ProposalDropped
from ..statemachine.errors import (
    Compacted,
    FenceRejected,
    FutureRevision,
    InvalidArgument,
    KVError,
    LeaseNotFound,
    LimitExceeded,
    SessionExpired,
    StaleRequest,
)
from .driver import OutcomeUnknown, Overloaded, ReadTimeout, Stopped
from .errors import InvalidMember, MemberExists, MemberNotFound, MembershipError
from .info import NodeInfo

__all__ = ["Metadata", "error_detail", "error_status"]

log = logging.getLogger("coterie.services")

Metadata = tuple[tuple[str, str | bytes], ...]
"""gRPC trailing metadata: (key, value) pairs; ``-bin`` keys carry bytes."""

_SC = grpc.StatusCode

_KV_CODES: dict[type[KVError], grpc.StatusCode] = {
    InvalidArgument: _SC.INVALID_ARGUMENT,
    LimitExceeded: _SC.INVALID_ARGUMENT,
    Compacted: _SC.OUT_OF_RANGE,  # as in etcd
    FutureRevision: _SC.OUT_OF_RANGE,
    StaleRequest: _SC.FAILED_PRECONDITION,
    SessionExpired: _SC.NOT_FOUND,
    LeaseNotFound: _SC.NOT_FOUND,
    FenceRejected: _SC.FAILED_PRECONDITION,  # the lock was lost: retrying cannot help
}

_MEMBERSHIP_CODES: dict[type, grpc.StatusCode] = {
    MemberNotFound: _SC.NOT_FOUND,
    MemberExists: _SC.ALREADY_EXISTS,
    InvalidMember: _SC.INVALID_ARGUMENT,
    MembershipError: _SC.FAILED_PRECONDITION,  # LearnerNotReady, MemberRemoved
}


def error_detail(error: KVError) -> kv_pb2.ErrorDetail:
    """A state machine error as protobuf: its code, message and constructor arguments."""
    d = kv_pb2.ErrorDetail(code=cast(kv_pb2.ErrorCode, error.code), message=error.message)
    if isinstance(error, LimitExceeded):
        d.limit, d.actual, d.maximum, d.what = error.limit, error.actual, error.maximum, error.what
    elif isinstance(error, Compacted):
        d.requested_revision, d.compact_revision = error.requested_revision, error.compact_revision
    elif isinstance(error, FutureRevision):
        d.requested_revision, d.current_revision = error.requested_revision, error.current_revision
    elif isinstance(error, StaleRequest):
        d.session_id, d.seq, d.latest_seq = error.session_id, error.seq, error.latest_seq
    elif isinstance(error, SessionExpired):
        d.session_id = error.session_id
    elif isinstance(error, LeaseNotFound):
        d.lease_id = error.lease_id
    elif isinstance(error, FenceRejected):
        d.fence_token, d.holder_token = error.token, error.holder_token
    return d


def error_status(
    exc: BaseException,
    info: NodeInfo,
    *,
    leader: int = 0,
    not_leader: grpc.StatusCode = _SC.UNAVAILABLE,
) -> tuple[grpc.StatusCode, str, Metadata]:
    """The gRPC status, details and trailing metadata of a failed call (see the module docstring).

    ``leader`` is the driver's current leader, used when a refusal carries no hint; ``not_leader``
    the status of a refusal by a non-leader (UNAVAILABLE for KV and Session, FAILED_PRECONDITION
    for the admin calls of Cluster).
    """
    if isinstance(exc, KVError):
        message = exc.message
        if isinstance(exc, LimitExceeded) and exc.limit.endswith("_bytes"):
            message = f"{message} ({_human_bytes(exc.maximum)})"
        detail = error_detail(exc)
        code = _KV_CODES.get(type(exc), _SC.UNKNOWN)
        return code, message, ((ERROR_DETAIL_KEY, detail.SerializeToString()),)
    if isinstance(exc, MembershipError):
        return _membership_code(exc), str(exc), ()
    if isinstance(exc, NotLeader):
        who = exc.leader_hint or leader
        msg = f"not the leader; retry on member {who}" if who else "not the leader; no leader known"
        return not_leader, msg, _leader_metadata(who, info)
    if isinstance(exc, InvalidConfChange):
        return _SC.INVALID_ARGUMENT, str(exc), ()
    if isinstance(exc, ConfChangeInProgress):
        return _SC.FAILED_PRECONDITION, str(exc), ()
    if isinstance(exc, ProposalDropped):  # transfer in progress, not a member, ...: retry later
        return _SC.UNAVAILABLE, str(exc), _leader_metadata(exc.leader_hint or leader, info)
    if isinstance(exc, Overloaded):
        return _SC.RESOURCE_EXHAUSTED, f"overloaded: {exc}; back off and retry", ()
    if isinstance(exc, OutcomeUnknown):
        return (
            _SC.UNAVAILABLE,
            f"outcome unknown: the write may or may not have been applied ({exc}); "
            "only a retry with the same session seq is safe",
            _leader_metadata(leader, info),
        )
    if isinstance(exc, ReadTimeout):
        return _SC.UNAVAILABLE, f"read timed out, safe to retry: {exc}", _leader_metadata(leader, info)
    if isinstance(exc, Stopped):
        return _SC.UNAVAILABLE, f"member {info.id} is shutting down", ()
    log.error("unexpected error in a gRPC handler", exc_info=exc)
    return _SC.INTERNAL, f"internal error: {type(exc).__name__}: {exc}", ()


def _membership_code(exc: MembershipError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = _MEMBERSHIP_CODES.get(cls)
        if code is not None:
            return code
    return _SC.FAILED_PRECONDITION  # pragma: no cover - MembershipError itself is in the table


def _human_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes" if n != 1 else "1 byte"


def _leader_metadata(leader: int, info: NodeInfo) -> Metadata:
    if not leader or leader == info.id:
        return ()
    addr = info.member(leader).client_addr
    md: Metadata = ((LEADER_ID_KEY, str(leader)),)
    return (*md, (LEADER_ADDR_KEY, addr)) if addr else md
