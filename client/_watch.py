"""The client side of a resumable watch, shared by :class:`~coterie.client.AsyncWatch` (and so by
:class:`~coterie.client.Watch`, which wraps it): what to (re-)create where, how far the watch has got,
and which stream failures end it. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from coterie.v1 import kv_pb2

from ._codec import kv_from_pb
from ._errors import map_rpc_error
from .errors import Compacted, CoterieError, InvalidArgument, ResourceExhausted, Unavailable
from .types import WatchEvent

_WATCH_FATAL_CODES = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE", "UNIMPLEMENTED", "PERMISSION_DENIED",
                                "UNAUTHENTICATED"})


def watch_stream_error(exc: Any, endpoint: str) -> tuple[CoterieError, bool]:
    """A failed watch stream as ``(error, fatal)``. Fatal errors end the watch (the request is
    malformed or compacted, or the server cannot serve it anywhere); every other failure (the member
    died, shut down, or dropped the stream) is reported as :class:`Unavailable` so that the watch
    resumes on another member."""
    err = map_rpc_error(exc, endpoint=endpoint, write=False, idempotent=True)
    if err.code in _WATCH_FATAL_CODES or (isinstance(err, ResourceExhausted) and not err.retriable):
        return err, True
    if isinstance(err, Unavailable):
        return err, False
    return Unavailable(f"the watch stream failed: {err.message}", code=err.code, endpoint=endpoint), False


def watch_ended(endpoint: str) -> Unavailable:
    """The error recorded when a member ends a watch stream by itself (it is shutting down)."""
    return Unavailable("the member ended the watch stream", code="OK", endpoint=endpoint)


class WatchState:
    """The client side of one resumable watch: what to (re-)create, and how far it has got.

    Invariant: ``received >= 0`` means every change in the range with revision in
    ``[first, received]`` has been handed over exactly once (``first`` is ``start_revision``, or the
    creation revision + 1 for a watch from "now"), in revision order, and nothing above ``received``.
    It holds because the server sends whole revisions (the changes of one revision are never split
    across responses, ``kv.proto``), so after each response ``received`` is the revision of its last
    event, and a watch re-created on any member starts at ``received + 1``. A response that breaks
    this (an event at or below ``received``, or out of order) raises :class:`CoterieError` instead of
    silently losing or repeating changes.

    ``received == -1``: a watch from "now" that has not been created yet; the created response sets
    it to the member's revision at creation, so a resumed watch from "now" misses nothing that
    happened while it reconnected."""

    def __init__(self, key: bytes, range_end: bytes, start_revision: int, prev_kv: bool) -> None:
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision}")
        self.key = key
        self.range_end = range_end
        self.prev_kv = prev_kv
        self.received = start_revision - 1 if start_revision > 0 else -1

    def create_request(self) -> Any:
        start = self.received + 1 if self.received >= 0 else 0
        return kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(
            key=self.key, range_end=self.range_end, start_revision=start, prev_kv=self.prev_kv))

    def on_response(self, resp: Any, endpoint: str) -> list[WatchEvent]:
        """The events of ``resp``, advancing ``received``. Raises :class:`Compacted` (with the oldest
        watchable revision) or :class:`InvalidArgument` if the server canceled the watch, and
        :class:`CoterieError` if the response breaks the ordering contract."""
        if resp.created and self.received < 0:
            self.received = resp.header.revision  # a watch from "now" starts after this revision
        if resp.canceled:
            if resp.compact_revision:
                start = self.received + 1
                raise Compacted(
                    f"the watch cannot continue from revision {start}: it is compacted; the oldest "
                    f"watchable revision is {resp.compact_revision}",
                    compact_revision=resp.compact_revision, requested_revision=start,
                    code="OUT_OF_RANGE", endpoint=endpoint)
            raise InvalidArgument(f"the server canceled the watch: {resp.cancel_reason or 'no reason'}",
                                  code="INVALID_ARGUMENT", endpoint=endpoint)
        if resp.progress_notify:
            # Every change in the range up to header.revision was sent on this stream (kv.proto);
            # resuming from there skips nothing and survives compaction of older history.
            if self.received >= 0:
                self.received = max(self.received, int(resp.header.revision))
            return []
        out: list[WatchEvent] = []
        last = self.received
        for ev in resp.events:
            rev = ev.kv.mod_revision
            if rev < last or (rev == last and not out):
                raise CoterieError(
                    f"watch protocol violation: an event at revision {rev} after revision {last} was "
                    "complete (the server split or reordered revisions)", retriable=False,
                    endpoint=endpoint)
            last = rev
            kind: Literal["PUT", "DELETE"] = "DELETE" if ev.type == kv_pb2.Event.DELETE else "PUT"
            prev = kv_from_pb(ev.prev_kv) if ev.HasField("prev_kv") and ev.prev_kv.key else None
            out.append(WatchEvent(kind, kv_from_pb(ev.kv), prev))
        self.received = last
        return out

    def delivered_revision(self, pending: Sequence[WatchEvent]) -> int:
        """The revision up to which every change was yielded to the caller, given the ``pending``
        (received, not yet yielded) events; -1 before a watch from "now" is created."""
        if pending:
            return pending[0].kv.mod_revision - 1
        return self.received
