"""Prometheus metrics of one node (``coterie node --metrics-addr HOST:PORT``), served at
``GET /metrics`` in the Prometheus text format.

Each node has its own :class:`prometheus_client.CollectorRegistry` (never the process-wide default
one, so several nodes in one process, as in tests, do not mix). Two kinds of metrics:

- read at scrape time from the node's state and its plain integer counters (no cost on the hot
  path): the gauges and the ``*_total`` counters below;
- recorded as they happen (``Histogram.observe``: a clock read and a short lock inside
  prometheus-client): the four ``*_seconds`` histograms. The driver and the peer transport hold them
  only while metrics are served (:meth:`NodeMetrics.attach`).

The HTTP listener (:func:`serve_metrics`) runs on the node's event loop, so a scrape reads the
state machine and the driver from the thread that owns them (no locks, no torn reads); a scrape
costs the loop the time to render the page (well under a millisecond for these few series).

================================================  =========  ==========================================
metric                                            type       what
================================================  =========  ==========================================
coterie_server_has_leader                         gauge      1 if this node knows a leader
coterie_server_is_leader                          gauge      1 if this node leads
coterie_server_leader_id                          gauge      the leader's member id, 0 if none known
coterie_server_leader_changes_seen_total          counter    new leaders this node saw
coterie_server_healthy                            gauge      1 if the health service says SERVING
coterie_raft_role{role}                           gauge      1 for the current role, 0 for the others
coterie_raft_term                                 gauge      current term
coterie_raft_commit_index                         gauge      highest log index known committed
coterie_raft_applied_index                        gauge      highest log index applied here
coterie_raft_last_index                           gauge      last index in this node's log
coterie_server_proposals_total{outcome}           counter    proposals made here (client writes,
                                                             session and lease calls, address
                                                             publications): ``ok`` (committed and
                                                             applied) or ``failed`` (refused as not
                                                             leader, overloaded, outcome unknown)
coterie_server_proposals_pending                  gauge      proposals awaiting their outcome
coterie_server_internal_proposals_total           counter    lease expiries and checkpoints proposed
coterie_server_read_index_failures_total          counter    linearizable reads that failed
coterie_mvcc_revision                             gauge      the key-value store's revision
coterie_leases                                    gauge      live leases (as Status ``leases``)
coterie_locks                                     gauge      locks with a contender (Status ``locks``)
coterie_watch_streams                             gauge      open Watch calls on this node
coterie_watchers                                  gauge      watchers on those calls
coterie_network_peer_connected{peer}              gauge      1 while the stream to the peer is open
coterie_network_peer_send_errors_total{peer}      counter    failed connection attempts and broken
                                                             streams to the peer
coterie_network_peer_sent_batches_total           counter    batches sent to peers
coterie_network_peer_sent_messages_total          counter    Raft messages sent to peers
coterie_network_peer_dropped_messages_total       counter    messages dropped, by ``reason``
  {reason}                                                   (queue_full, disconnected, faults)
coterie_network_peer_received_batches_total       counter    batches received from peers
coterie_disk_wal_fsync_duration_seconds           histogram  one WAL save with fdatasync (write+sync)
coterie_server_apply_duration_seconds             histogram  applying one batch of committed entries
coterie_network_peer_batch_send_duration_seconds  histogram  a peer stream accepting one batch, by
  {peer}                                                     ``peer`` (not a round trip: one-way)
coterie_server_read_index_duration_seconds        histogram  a linearizable read's barrier
                                                             (ReadIndex and the wait for the apply)
================================================  =========  ==========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..raft import Role
from .driver import Driver
from .peer import PeerTransport
from .services import count_locks
from .watch import watch_counts

__all__ = ["NodeMetrics", "serve_metrics"]

log = logging.getLogger("coterie.metrics")

_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                 1.0, 2.5, 5.0)
"""Seconds: from 100 µs (an apply batch, a batch handed to a healthy stream) to 5 s (a stalled disk)."""


class _StateCollector(Collector):
    """Everything read at scrape time (see the module docstring)."""

    def __init__(self, driver: Driver, transport: PeerTransport | None, healthy: Callable[[], bool]) -> None:
        self.driver = driver
        self.transport = transport
        self.healthy = healthy

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        d = self.driver
        raft = d.raw.raft

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield gauge("coterie_server_has_leader", "1 if this node knows a leader.", 1 if d.leader else 0)
        yield gauge("coterie_server_is_leader", "1 if this node is the leader.",
                    1 if d.role == Role.LEADER else 0)
        yield gauge("coterie_server_leader_id", "The leader's member id, 0 if none is known.", d.leader)
        yield counter("coterie_server_leader_changes_seen", "New leaders this node saw.", d.leader_changes)
        yield gauge("coterie_server_healthy", "1 if the gRPC health service says SERVING.",
                    1 if self.healthy() else 0)
        role = GaugeMetricFamily("coterie_raft_role", "1 for this node's current Raft role.", labels=["role"])
        for r in Role:
            role.add_metric([r.name.lower()], 1 if d.role == r else 0)
        yield role
        yield gauge("coterie_raft_term", "The current Raft term.", raft.term)
        yield gauge("coterie_raft_commit_index", "The highest log index known to be committed.",
                    raft.log.committed)
        yield gauge("coterie_raft_applied_index", "The highest log index applied to the state machine.",
                    d.sm.applied_index)
        yield gauge("coterie_raft_last_index", "The last index in this node's log.", raft.log.last_index())
        props = CounterMetricFamily("coterie_server_proposals", "Proposals made on this node (writes, "
                                    "session and lease calls), by outcome: ok (committed and applied) "
                                    "or failed.", labels=["outcome"])
        props.add_metric(["ok"], d.proposals_ok)
        props.add_metric(["failed"], d.proposals_failed)
        yield props
        yield gauge("coterie_server_proposals_pending", "Proposals awaiting their outcome.",
                    d.pending_proposals())
        yield counter("coterie_server_internal_proposals", "Lease expiries and checkpoints proposed.",
                      d.internal_proposals)
        yield counter("coterie_server_read_index_failures", "Linearizable read barriers that failed.",
                      d.read_index_failures)
        yield gauge("coterie_mvcc_revision", "The key-value store's revision.", d.sm.revision)
        yield gauge("coterie_leases", "Live leases in the applied state.", len(d.sm.leases))
        yield gauge("coterie_locks", "Locks with at least one contender in the applied state.",
                    count_locks(d.sm))
        streams, watchers = watch_counts(d)
        yield gauge("coterie_watch_streams", "Open Watch calls on this node.", streams)
        yield gauge("coterie_watchers", "Watchers on the open Watch calls of this node.", watchers)
        t = self.transport
        if t is None:
            return
        connected = GaugeMetricFamily("coterie_network_peer_connected",
                                      "1 while the stream to the peer is open.", labels=["peer"])
        errors = CounterMetricFamily("coterie_network_peer_send_errors",
                                     "Failed connection attempts and broken streams to the peer.",
                                     labels=["peer"])
        for pid, link in sorted(t.links.items()):
            connected.add_metric([str(pid)], 1 if link.connected else 0)
            errors.add_metric([str(pid)], link.errors)
        yield connected
        yield errors
        st = t.stats
        yield counter("coterie_network_peer_sent_batches", "Batches sent to peers.", st.sent_batches)
        yield counter("coterie_network_peer_sent_messages", "Raft messages sent to peers.", st.sent_messages)
        dropped = CounterMetricFamily("coterie_network_peer_dropped_messages",
                                      "Raft messages to peers dropped, by reason.", labels=["reason"])
        dropped.add_metric(["queue_full"], st.dropped_queue_full)
        dropped.add_metric(["disconnected"], st.dropped_disconnected)
        dropped.add_metric(["faults"], st.dropped_faults)
        yield dropped
        yield counter("coterie_network_peer_received_batches", "Batches received from peers.",
                      st.received_batches)


class NodeMetrics:
    """One node's registry: the scrape-time collector and the four latency histograms."""

    def __init__(self, driver: Driver, transport: PeerTransport | None = None, *,
                 healthy: Callable[[], bool] = lambda: False) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.driver = driver
        self.transport = transport
        self.registry.register(_StateCollector(driver, transport, healthy))
        reg = self.registry
        self.fsync = Histogram("coterie_disk_wal_fsync_duration_seconds",
                               "Seconds per WAL save with fdatasync (the write and the sync).",
                               buckets=_FAST_BUCKETS, registry=reg)
        self.apply = Histogram("coterie_server_apply_duration_seconds",
                               "Seconds to apply one batch of committed entries.",
                               buckets=_FAST_BUCKETS, registry=reg)
        self.read_index = Histogram("coterie_server_read_index_duration_seconds",
                                    "Seconds from a linearizable read's call to its barrier's answer "
                                    "(ReadIndex and the wait for the apply).",
                                    buckets=_FAST_BUCKETS, registry=reg)
        self.peer_send = Histogram("coterie_network_peer_batch_send_duration_seconds",
                                   "Seconds for a peer's stream to accept one batch of Raft messages.",
                                   labelnames=["peer"], buckets=_FAST_BUCKETS, registry=reg)

    def attach(self) -> None:
        """Start recording the histograms (the driver and transport call ``observe``)."""
        self.driver.fsync_seconds = self.fsync
        self.driver.apply_seconds = self.apply
        self.driver.read_index_seconds = self.read_index
        if self.transport is not None:
            self.transport.batch_send_seconds = self.peer_send

    def detach(self) -> None:
        self.driver.fsync_seconds = self.driver.apply_seconds = self.driver.read_index_seconds = None
        if self.transport is not None:
            self.transport.batch_send_seconds = None

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def split_host_port(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) to ``(host, port)``."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


_REQUEST_TIMEOUT = 5.0
_MAX_HEADER_LINES = 100


async def serve_metrics(metrics: NodeMetrics, addr: str) -> asyncio.Server:
    """An HTTP/1.x listener on ``addr`` answering ``GET /metrics`` (and ``HEAD``) with
    :meth:`NodeMetrics.render`, one request per connection. Raises ``OSError`` if it cannot bind."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), _REQUEST_TIMEOUT)
            for _ in range(_MAX_HEADER_LINES):
                h = await asyncio.wait_for(reader.readline(), _REQUEST_TIMEOUT)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.split()
            method = parts[0] if parts else b""
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET /metrics\n"
            elif path == b"/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.render()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"see /metrics\n"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n").encode()
            writer.write(head if method == b"HEAD" else head + body)
            await asyncio.wait_for(writer.drain(), _REQUEST_TIMEOUT)
        except (TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.debug("metrics request failed: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    host, port = split_host_port(addr)
    return await asyncio.start_server(handle, host or None, port)
