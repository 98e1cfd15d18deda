"""The errors the coterie client raises. Every one is a :class:`CoterieError`.

``retriable`` says whether calling again is safe *and* may help: the client already retried retriable
failures inside the call's deadline, so an error that escapes is either permanent (``retriable`` false)
or a retriable failure that outlived the deadline. ``unsafe`` says that calling again as is may apply a
write twice (its outcome is unknown). Each message ends with one of three marks, which say exactly
that: ``[safe to retry]``, ``[not safe to retry as is]`` (``unsafe``), ``[retrying will not help]``
(permanent, e.g. a bad argument; a read is never marked unsafe).
"""

from __future__ import annotations

__all__ = [
    "ClientClosed",
    "Compacted",
    "CoterieError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FenceRejected",
    "InvalidArgument",
    "InvalidEndpoint",
    "LeaseLost",
    "LeaseNotFound",
    "LockTimeout",
    "NotLeader",
    "OutcomeUnknown",
    "ResourceExhausted",
    "SessionExpired",
    "SnapshotError",
    "Unavailable",
]

_SAFE = "safe to retry"
_UNSAFE = "not safe to retry as is"
_PERMANENT = "retrying will not help"


class CoterieError(Exception):
    """Base class. ``code`` is the gRPC status name (``""`` if none), ``endpoint`` the member that
    answered (``""`` if none)."""

    retriable: bool = False
    unsafe: bool = False
    """A blind retry may apply a write twice (only ever true of writes, and never with ``retriable``)."""

    def __init__(self, message: str, *, retriable: bool | None = None, code: str = "",
                 endpoint: str = "", unsafe: bool | None = None) -> None:
        if retriable is not None:
            self.retriable = retriable
        if unsafe is not None:
            self.unsafe = unsafe
        if self.retriable:
            self.unsafe = False
        self.message = message
        self.code = code
        self.endpoint = endpoint
        hint = _SAFE if self.retriable else _UNSAFE if self.unsafe else _PERMANENT
        where = f" (from {endpoint})" if endpoint else ""
        super().__init__(f"{message}{where} [{hint}]")


class NotLeader(CoterieError):
    """The member asked is not the leader; ``leader_id`` / ``leader_addr`` name the leader if known."""

    retriable = True

    def __init__(self, message: str, *, leader_id: int = 0, leader_addr: str = "", code: str = "",
                 endpoint: str = "") -> None:
        self.leader_id = leader_id
        self.leader_addr = leader_addr
        super().__init__(message, code=code, endpoint=endpoint)


class Unavailable(CoterieError):
    """No member could be reached, or the member cannot serve now (no leader, shutting down)."""

    retriable = True


class InvalidArgument(CoterieError):
    """The request is malformed or breaks a limit (e.g. a key over 4 KiB); retrying fails the same way."""


class InvalidEndpoint(InvalidArgument, ValueError):
    """An endpoint given to a client is not ``HOST:PORT`` (a port in 1..65535, an IPv6 address in
    brackets: ``[::1]:7001``); raised by the constructor, before anything is sent. ``bad`` is the
    endpoint as given."""

    def __init__(self, message: str, *, bad: str = "") -> None:
        self.bad = bad
        super().__init__(message)


class ClientClosed(CoterieError):
    """The client was closed (``close()``, or leaving its ``with`` block) before or during the call."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message, retriable=False)


class Compacted(CoterieError):
    """The requested revision was compacted; ``compact_revision`` is the oldest still readable."""

    def __init__(self, message: str, *, compact_revision: int = 0, requested_revision: int = 0,
                 code: str = "", endpoint: str = "") -> None:
        self.compact_revision = compact_revision
        self.requested_revision = requested_revision
        super().__init__(message, code=code, endpoint=endpoint)


class OutcomeUnknown(CoterieError):
    """A write may or may not have been applied. Inside a call, the client retries it with the same
    session sequence number (applied at most once); escaping a call, a blind retry may apply twice."""

    unsafe = True


class DeadlineExceeded(CoterieError):
    """The call did not complete within its deadline; ``last_error`` is the last failure seen."""

    def __init__(self, message: str, *, retriable: bool, last_error: CoterieError | None = None,
                 code: str = "", endpoint: str = "", unsafe: bool = False) -> None:
        self.last_error = last_error
        super().__init__(message, retriable=retriable, code=code, endpoint=endpoint, unsafe=unsafe)


class ResourceExhausted(CoterieError):
    """The server is overloaded (retriable, after a back-off) or the request is too large (not)."""


class FailedPrecondition(CoterieError):
    """The request conflicts with the server's state (e.g. a stale session sequence number)."""


class SessionExpired(FailedPrecondition):
    """The client's session is unknown to the cluster (expired when idle, or closed)."""


class LeaseNotFound(CoterieError):
    """The lease does not exist (never granted, expired or revoked); ``lease_id`` names it."""

    def __init__(self, message: str, *, lease_id: int = 0, code: str = "", endpoint: str = "") -> None:
        self.lease_id = lease_id
        super().__init__(message, code=code, endpoint=endpoint)


class FenceRejected(FailedPrecondition):
    """A fenced write was refused whole: when the cluster applied it, the holder of the fence's prefix
    (the oldest key under it: a lock's holder, an election's leader) was not ``token`` but
    ``holder_token`` (0: no holder). The lock or leadership that the write was fenced with is gone;
    retrying the same write fails the same way."""

    def __init__(self, message: str, *, token: int = 0, holder_token: int = 0, code: str = "",
                 endpoint: str = "") -> None:
        self.token = token
        self.holder_token = holder_token
        super().__init__(message, code=code, endpoint=endpoint)


class LeaseLost(CoterieError):
    """A lease (or the lock or leadership held through it) can no longer be trusted: its conservative
    deadline (``valid_until``) passed without a newer answered keep-alive, or the cluster said it is
    gone. ``lease_id`` names it."""

    def __init__(self, message: str, *, lease_id: int = 0) -> None:
        self.lease_id = lease_id
        super().__init__(message)


class LockTimeout(CoterieError):
    """A lock (or a campaign) was not acquired within its ``timeout``; the contender's key and lease
    were removed again. ``name`` is the lock's name."""

    retriable = True

    def __init__(self, message: str, *, name: str = "") -> None:
        self.name = name
        super().__init__(message)


class SnapshotError(CoterieError):
    """A snapshot download (``AsyncClient.snapshot``) failed its integrity checks: the stream ended
    without its final chunk, or the bytes received do not match the size or SHA-256 the member
    announced. Nothing was written at the destination path. Retrying may help (a fresh download)."""

    retriable = True
