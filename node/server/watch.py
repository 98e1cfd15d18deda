"""The server side of ``KV.Watch``: one :class:`WatchStream` per bidirectional call.

A stream carries any number of watchers, created and canceled by the client's requests. Each
watcher keeps ``next_revision``, the first revision it has not delivered yet. Whenever the driver
reports that the state machine advanced (:attr:`Driver.on_applied`), and once at creation, the
stream reads ``sm.kv.events_since(next_revision, key, range_end)`` and sends what it finds, then
moves ``next_revision`` past the last revision sent. Events are therefore delivered exactly once and
in revision order, and the changes of one revision are never split across responses.

There is no per-watcher queue: undelivered events stay in the store's history, so a slow client
costs no memory beyond one batch; it just reads further back next time. If that history is compacted
past a watcher's ``next_revision`` (or a create asks for a compacted ``start_revision``), the
watcher is canceled with ``compact_revision`` set, as etcd does; the client may re-create it from
that revision after re-reading the state.

The state machine is only touched on the event loop (the driver applies on it), so no locks are
needed.

Watches work on followers too: they read the follower's *applied* state, which may lag the leader's,
but what is delivered is still exactly-once and in order. A client that reconnects to another member
resumes with ``start_revision`` = its last seen revision + 1 and gets no gaps and no duplicates
(unless that revision was compacted meanwhile, which cancels the watch as above).

As in etcd, the call ends when the client closes its side of the stream.

Two timers keep a stream useful when nothing happens:

- **Progress notifications.** A watcher that has sent nothing for ``progress_interval`` seconds and
  has delivered everything up to the member's revision gets a response with ``progress_notify`` and
  no events: "every change in your range up to ``header.revision`` has been sent". A client that
  reconnects resumes from there, so a quiet watch is not canceled as compacted when history it never
  needed is compacted.
- **Leaderless members.** A member that is not the leader and has not heard from one for
  ``leaderless_limit`` seconds (default: two election timeouts) is probably cut off from the cluster;
  its applied state stops advancing and its watchers would wait silently. The stream ends with
  UNAVAILABLE ("no leader"), like etcd's ``WithRequireLeader``, so the client resumes on another member.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from coterie.v1 import kv_pb2

from ..raft import Role
from ..statemachine import Compacted, Event, KVError
from .driver import Driver, ReadTimeout
from .kv_codec import WatchCancel, WatchCreate, watch_request_from_pb, watch_response_to_pb

__all__ = ["MAX_EVENTS_PER_RESPONSE", "MAX_RESPONSE_BYTES", "PROGRESS_INTERVAL", "NoLeader", "WatchStream",
           "watch_counts"]

_streams: weakref.WeakSet[WatchStream] = weakref.WeakSet()
"""Every :class:`WatchStream` of the process whose :meth:`~WatchStream.run` is under way (several
nodes share one process in tests), for :func:`watch_counts`."""


def watch_counts(driver: Driver) -> tuple[int, int]:
    """``(streams, watchers)``: the open Watch calls served from ``driver`` and their watchers."""
    streams = [s for s in list(_streams) if s.driver is driver]
    return len(streams), sum(len(s._watchers) for s in streams)

PROGRESS_INTERVAL = 5.0
"""Seconds a watcher may stay silent before it gets a progress notification."""


class NoLeader(ReadTimeout):
    """The member has been without a leader too long to serve watches (maps to UNAVAILABLE)."""

MAX_EVENTS_PER_RESPONSE = 1000
"""Events per response before a new one is started (at a revision boundary: a revision's events are
never split, so one response can hold more)."""
MAX_RESPONSE_BYTES = 1 << 20
"""Keys and values (with ``prev_kv``: previous ones too) per response before a new one is started,
likewise at a revision boundary (one revision may exceed it: clients must accept large messages)."""


@dataclass(slots=True)
class _Watcher:
    id: int
    key: bytes
    range_end: bytes | None
    prev_kv: bool
    next_revision: int
    last_sent: float = 0.0
    """Loop time of the last response for this watcher (progress notifications count)."""


class WatchStream:
    """The watchers of one ``Watch`` call. Iterate :meth:`run` for the responses to send."""

    def __init__(self, driver: Driver, *, cluster_id: str = "", member_id: int = 0,
                 progress_interval: float | None = None, leaderless_limit: float | None = None) -> None:
        self.driver = driver
        self.progress_interval = PROGRESS_INTERVAL if progress_interval is None else progress_interval
        if leaderless_limit is None:
            leaderless_limit = 2 * driver.raw.raft.cfg.election_tick * driver.cfg.tick_interval
        self.leaderless_limit = leaderless_limit
        self._leaderless_since: float | None = None
        self.cluster_id = cluster_id
        self.member_id = member_id
        self._watchers: dict[int, _Watcher] = {}
        self._next_id = 1
        self._control: deque[kv_pb2.WatchResponse] = deque()
        self._wake = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None

    # ---------------------------------------------------------------- responses
    def _response(self, watch_id: int, events: list[Event] | None = None, *, prev_kv: bool = False,
                  **kw: Any) -> kv_pb2.WatchResponse:
        return watch_response_to_pb(
            watch_id,
            events or (),
            revision=self.driver.sm.kv.revision,
            prev_kv=prev_kv,
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            raft_term=self.driver.raw.raft.term,
            **kw,
        )

    def _compacted(self, w: _Watcher, exc: Compacted) -> kv_pb2.WatchResponse:
        return self._response(
            w.id,
            canceled=True,
            compact_revision=exc.compact_revision,
            cancel_reason=(
                f"revision {exc.requested_revision} has been compacted; "
                f"the oldest available revision is {exc.oldest_revision}"
            ),
        )

    # ---------------------------------------------------------------- requests
    def handle(self, pb: kv_pb2.WatchRequest) -> None:
        """Act on one client request (raises :class:`KVError` for a malformed one)."""
        req = watch_request_from_pb(pb)
        if isinstance(req, WatchCancel):
            w = self._watchers.pop(req.watch_id, None)
            reason = "" if w is not None else f"no watch with id {req.watch_id} on this stream"
            self._control.append(self._response(req.watch_id, canceled=True, cancel_reason=reason))
        else:
            self._create(req)
        self._wake.set()

    def _create(self, req: WatchCreate) -> None:
        wid = req.watch_id
        if wid == 0:
            while self._next_id in self._watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        elif wid in self._watchers:
            self._control.append(self._response(
                wid, created=True, canceled=True,
                cancel_reason=f"watch id {wid} is already in use on this stream"))
            return
        kv = self.driver.sm.kv
        start = req.start_revision or kv.revision + 1
        w = _Watcher(wid, req.key, req.range_end, req.prev_kv, start)
        try:  # validate key, range and revision now, so the create is answered with the outcome
            kv.events_since(start, req.key, req.range_end)
        except Compacted as exc:
            self._control.append(self._response(wid, created=True))
            self._control.append(self._compacted(w, exc))
            return
        except KVError as exc:
            self._control.append(self._response(
                wid, created=True, canceled=True, cancel_reason=exc.message))
            return
        w.last_sent = asyncio.get_running_loop().time()
        self._watchers[wid] = w
        self._control.append(self._response(wid, created=True))

    async def _read_requests(self, requests: AsyncIterator[kv_pb2.WatchRequest]) -> None:
        try:
            async for pb in requests:
                self.handle(pb)
        except Exception as exc:  # a malformed request, or the transport failed: end the call
            self._error = exc
        finally:
            self._done = True
            self._wake.set()

    def _check_leader(self, now: float) -> None:
        """Raise :class:`NoLeader` once this member has been cut off from any leader for longer
        than ``leaderless_limit`` (see the module docstring)."""
        d = self.driver
        contact = d.leader_contact_seconds()
        ok = d.role == Role.LEADER or (d.leader != 0 and 0 <= contact <= self.leaderless_limit)
        if ok:
            self._leaderless_since = None
            return
        if self._leaderless_since is None:
            self._leaderless_since = now
        elif now - self._leaderless_since >= self.leaderless_limit:
            raise NoLeader(f"no leader: this member has not heard from a leader for "
                           f"{self.leaderless_limit:.1f} s; watch from another member")

    # ---------------------------------------------------------------- events
    def _batches(self, w: _Watcher) -> list[list[Event]]:
        """The pending events of ``w`` split into responses at revision boundaries; advances
        ``next_revision`` past them. Raises :class:`Compacted`."""
        kv = self.driver.sm.kv
        if w.next_revision > kv.revision:
            return []
        events = kv.events_since(w.next_revision, w.key, w.range_end)
        w.next_revision = kv.revision + 1  # nothing else in the range up to here
        out: list[list[Event]] = []
        cur: list[Event] = []
        size = 0
        for ev in events:
            full = len(cur) >= MAX_EVENTS_PER_RESPONSE or size >= MAX_RESPONSE_BYTES
            if full and ev.kv.mod_revision != cur[-1].kv.mod_revision:
                out.append(cur)
                cur, size = [], 0
            cur.append(ev)
            size += len(ev.kv.key) + len(ev.kv.value)
            if w.prev_kv and ev.prev_kv is not None:
                size += len(ev.prev_kv.key) + len(ev.prev_kv.value)
        if cur:
            out.append(cur)
        return out

    async def run(self, requests: AsyncIterator[kv_pb2.WatchRequest]) -> AsyncIterator[kv_pb2.WatchResponse]:
        """Serve the call: read ``requests`` concurrently and yield the responses. Ends when the
        client closes its side; re-raises a malformed request's :class:`KVError`."""
        notify: Callable[[], None] = self._wake.set
        self.driver.on_applied.append(notify)
        reader = asyncio.create_task(self._read_requests(requests))
        _streams.add(self)
        try:
            loop = asyncio.get_running_loop()
            check = max(0.05, min(self.progress_interval, self.leaderless_limit) / 2)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), check)
                self._wake.clear()
                self._check_leader(loop.time())
                while self._control:
                    yield self._control.popleft()
                if self._error is not None:
                    raise self._error
                if self._done:
                    return
                for w in list(self._watchers.values()):
                    if self._watchers.get(w.id) is not w:  # canceled while we were sending
                        continue
                    try:
                        batches = self._batches(w)
                    except Compacted as exc:
                        del self._watchers[w.id]
                        yield self._compacted(w, exc)
                        continue
                    for events in batches:
                        if self._watchers.get(w.id) is not w:
                            break
                        w.last_sent = loop.time()
                        yield self._response(w.id, events, prev_kv=w.prev_kv)
                    if (self._watchers.get(w.id) is w and loop.time() - w.last_sent >= self.progress_interval
                            and w.next_revision == self.driver.sm.kv.revision + 1):
                        w.last_sent = loop.time()
                        resp = self._response(w.id, progress_notify=True)
                        resp.header.revision = w.next_revision - 1
                        yield resp
                    # a control response queued meanwhile goes out before the next round
                    if self._control:
                        self._wake.set()
        finally:
            _streams.discard(self)
            with contextlib.suppress(ValueError):
                self.driver.on_applied.remove(notify)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._watchers.clear()
