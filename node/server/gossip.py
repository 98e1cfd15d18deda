"""The node's host for the pure gossip core (:mod:`coterie.node.gossip`): sockets, clock and timers.

``coterie node --gossip-addr HOST:PORT --join SEED[,SEED]`` runs one :class:`GossipHost`:

- **UDP** on ``HOST:PORT`` (an asyncio ``DatagramProtocol``) carries every gossip packet of at most
  ``config.max_packet_size`` bytes: pings, ping-reqs, acks, nacks, piggybacked broadcasts, and
  push-pulls small enough to fit.
- **TCP** on the same ``HOST:PORT`` carries the push-pulls that do not fit a datagram (the core's host
  contract): one connection per exchange, the initiator writes one frame (a 4-byte big-endian length,
  then the packet), the answering member writes its reply frame(s) back on the same connection and
  closes it. A stream beside the datagrams, on the same port, as hashicorp/memberlist does: a seed is
  one address, and nothing about gossip depends on the Raft peer port being reachable.
- **Time**: a timer task calls ``tick`` at the core's ``next_deadline`` with the event loop's
  monotonic clock (``loop.time()``), and also every :data:`META_POLL` seconds to re-read this node's
  tags (its Raft role changes): when they change, ``update_meta`` publishes them (a higher incarnation).
- **Input** the core does not accept is dropped and counted (``stats``: ``dropped_*`` from the core,
  ``host_*`` from the sockets here); nothing a peer sends can stop the host.
- **Join** (:meth:`GossipHost.join_forever`) sends a push-pull to every seed and waits for an answer,
  retrying with exponential back-off (0.5 s doubling to 30 s, jittered; each failure logged) until
  one member answers, or until some member reaches us first.

The tags (``meta``) are this node's ``name``, advertised ``client_addr``, ``peer_addr``, Raft ``role``
and coterie ``version``; ``coterie members`` shows them.

**Gossip never starts a Raft election, and never changes the Raft configuration**, in this slice or
later ones: nothing here calls into the driver but to read its role. SWIM's failure detection is
probabilistic and tuned for membership: a member is declared dead after a suspicion of several
seconds that other members may confirm, and a slow or partitioned observer can be wrong in either
direction (Lifeguard makes that rarer, not impossible). Leadership needs a different guarantee: a
leader is only replaced when a majority of voters stopped hearing its heartbeats for an election
timeout, which Raft measures on its own links with its own, much shorter, timers (and PreVote and
CheckQuorum keep a partitioned node from disrupting a healthy leader). Letting a gossip "dead" trigger
an election would add a second, less accurate failure detector that can depose a healthy leader;
gossip's verdicts are for people and tools (``coterie members``), and later for deciding whom to
add or remove, through the ordinary, committed membership changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from coterie.v1 import cluster_pb2

from ..gossip import EventKind, Gossip, GossipConfig, GossipEvent, MemberState

__all__ = ["META_POLL", "GossipHost", "format_addr", "split_addr"]

log = logging.getLogger("coterie.gossip")

META_POLL = 0.25
"""Seconds between two readings of this node's tags (its Raft role), so a role change is published
within about this long."""

HISTORY = 8
"""State changes remembered per member for ``coterie members --why``."""

FRAME_HEADER = 4
"""Bytes of the big-endian length before each packet on a TCP push-pull connection."""

STREAM_TIMEOUT = 10.0
"""Seconds one TCP push-pull exchange may take (connect, write, read the answer) before it is
abandoned and counted in ``host_stream_errors``."""

JOIN_WAIT = 1.0
"""Seconds a join attempt waits for an answer before it backs off and tries again."""
JOIN_BACKOFF_MAX = 30.0
"""Longest pause between two join attempts."""


def split_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to ``(host, port)``; ValueError if malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_addr(host: str, port: int) -> str:
    """``(host, port)`` back to ``HOST:PORT`` (brackets around an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, host: GossipHost) -> None:
        self.host = host

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.host._on_datagram(data, format_addr(str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a dead member
        self.host.host_stats["host_udp_errors"] += 1


class GossipHost:
    """One node's gossip: the core, its UDP and TCP sockets on ``bind_addr``, its timer.

    ``meta`` is called for this node's tags at start and every :data:`META_POLL` seconds.
    ``advertise_addr`` (default ``bind_addr``) is the address other members reach this one at; it is
    this member's address in everyone's table. Runs on the event loop that calls :meth:`start`.
    """

    def __init__(self, name: str, bind_addr: str, config: GossipConfig, meta: Callable[[], dict[str, str]],
                 *, advertise_addr: str = "", rng: random.Random | None = None) -> None:
        config.validate()
        split_addr(bind_addr)
        self.name = name
        self.bind_addr = bind_addr
        self.addr = advertise_addr or bind_addr
        self.config = config
        self._meta_fn = meta
        self._rng = rng if rng is not None else random.Random()
        self.core: Gossip | None = None
        self.host_stats: dict[str, int] = {
            "host_udp_errors": 0,
            "host_stream_exchanges": 0,
            "host_stream_errors": 0,
            "host_stream_dropped_oversized": 0,
            "host_receive_errors": 0,
            "host_join_attempts": 0,
        }
        self.history: dict[str, deque[GossipEvent]] = {}
        self.joined = asyncio.Event()
        """Set once another member is known alive (a seed answered, or someone reached us)."""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._join_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._meta: dict[str, str] = {}
        self._next_meta_poll = 0.0
        self._started_wall = time.time()
        self._conn_seq = 0
        self._stopping = False

    # ------------------------------------------------------------------ life cycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port, create the core and start the timer."""
        loop = self.loop
        host, port = split_addr(self.bind_addr)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), local_addr=(host, port))
        self._udp = transport
        bound = transport.get_extra_info("sockname")
        port = int(bound[1])
        try:
            self._tcp = await asyncio.start_server(self._on_stream, host, port, reuse_address=True)
        except OSError:
            transport.close()
            raise
        if self.addr == self.bind_addr and split_addr(self.bind_addr)[1] == 0:
            self.addr = format_addr(host, port)
            self.bind_addr = self.addr
        self._meta = dict(self._meta_fn())
        now = loop.time()
        self._next_meta_poll = now + META_POLL
        self.core = Gossip(self.name, self.addr, self.config, self._rng, now, self._meta)
        self._started_wall = time.time()
        self._timer = asyncio.create_task(self._run_timer(), name="gossip-timer")
        log.info("gossip started", extra={"gossip_addr": self.addr, "node": self.name})

    def join(self, seeds: list[str]) -> None:
        """Join through ``seeds`` in the background (see :meth:`join_forever`)."""
        if self._join_task is None and seeds:
            self._join_task = asyncio.create_task(self.join_forever(seeds), name="gossip-join")

    async def join_forever(self, seeds: list[str]) -> None:
        """Push-pull with every seed until one answers (or another member reaches us), backing off
        exponentially between attempts; every failed attempt is logged."""
        delay = 0.5
        attempt = 0
        while not self.joined.is_set() and not self._stopping:
            attempt += 1
            self.host_stats["host_join_attempts"] += 1
            addrs = await self._resolve(seeds)
            core = self._core()
            others = [a for a in addrs if a != self.addr]
            if not others and all(s == self.addr for s in seeds):
                log.info("gossip: no seed but this member; waiting to be joined", extra={"node": self.name})
                return
            core.join(others, self.loop.time())
            self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.joined.wait(), JOIN_WAIT)
            if self.joined.is_set():
                break
            pause = delay * self._rng.uniform(0.8, 1.2)
            log.warning("gossip: no seed answered; retrying", extra={
                "node": self.name, "seeds": ",".join(seeds), "attempt": attempt,
                "retry_in_s": round(pause, 2)})
            await asyncio.sleep(pause)
            delay = min(delay * 2, JOIN_BACKOFF_MAX)
        if self.joined.is_set():
            log.info("gossip: joined", extra={"node": self.name, "attempts": attempt,
                                              "members": len(self._core().members())})

    async def stop(self, *, leave_timeout: float = 1.0) -> None:
        """Leave gracefully (broadcast our departure for up to ``leave_timeout`` s), then close."""
        if self._stopping:
            return
        self._stopping = True
        core = self.core
        if self._join_task is not None:
            self._join_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._join_task
        if core is not None and self._udp is not None:
            loop = self.loop
            core.leave(loop.time())
            deadline = loop.time() + leave_timeout
            while core.pending_broadcasts and loop.time() < deadline:
                self._wake.set()
                await asyncio.sleep(min(0.05, self.config.gossip_interval or 0.05))
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
        if self._udp is not None:
            self._udp.close()

    # ------------------------------------------------------------------ the core's clock

    def _core(self) -> Gossip:
        if self.core is None:
            raise RuntimeError("gossip is not started")
        return self.core

    async def _run_timer(self) -> None:
        loop = self.loop
        core = self._core()
        while True:
            try:
                now = loop.time()
                if now >= self._next_meta_poll:
                    self._poll_meta(now)
                core.tick(now)
                self._flush()
            except Exception:  # a bug, not peer input: keep gossiping, say so
                log.exception("gossip: tick failed", extra={"node": self.name})
            wait = min(core.next_deadline(), self._next_meta_poll) - loop.time()
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            else:
                await asyncio.sleep(0)

    def _poll_meta(self, now: float) -> None:
        self._next_meta_poll = now + META_POLL
        if self._stopping:
            return
        try:
            meta = dict(self._meta_fn())
        except Exception:
            log.exception("gossip: reading this node's tags failed", extra={"node": self.name})
            return
        if meta != self._meta:
            self._meta = meta
            self._core().update_meta(meta, now)
            log.info("gossip: tags changed", extra={"node": self.name, "tags": meta})

    # ------------------------------------------------------------------ input

    def _on_datagram(self, data: bytes, from_addr: str) -> None:
        self._receive(data, from_addr)
        self._flush()

    def _receive(self, data: bytes, from_addr: str) -> None:
        core = self.core
        if core is None:
            return
        try:
            core.receive(data, from_addr, self.loop.time())
        except Exception:  # the core promises not to raise on input; never let a packet stop us
            self.host_stats["host_receive_errors"] += 1
            log.exception("gossip: receive failed", extra={"node": self.name, "from": from_addr})
        self._wake.set()  # the deadline may have moved (a new suspicion, a probe answered)

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """One frame, or None at a clean end of stream; ValueError when the length is over the
        push-pull limit."""
        try:
            head = await reader.readexactly(FRAME_HEADER)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        n = int.from_bytes(head, "big")
        if n > self.config.max_push_pull_size:
            raise ValueError(f"frame of {n} bytes")
        return await reader.readexactly(n)

    async def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A member's push-pull over TCP: read one frame, answer on the same connection."""
        self._conn_seq += 1
        key = f"stream#{self._conn_seq}"  # a reply address that only this connection answers to
        try:
            async with asyncio.timeout(STREAM_TIMEOUT):
                data = await self._read_frame(reader)
                if data is None:
                    return
                self._receive(data, key)
                for packet in self._flush(reply_to=key):
                    writer.write(len(packet).to_bytes(FRAME_HEADER, "big") + packet)
                await writer.drain()
                self.host_stats["host_stream_exchanges"] += 1
        except ValueError:
            self.host_stats["host_stream_dropped_oversized"] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            self.host_stats["host_stream_errors"] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ------------------------------------------------------------------ output

    def _flush(self, reply_to: str | None = None) -> list[bytes]:
        """Send the core's outbox (UDP, or TCP above ``max_packet_size``); record its events. Packets
        addressed to ``reply_to`` are returned instead (the answer on a TCP connection)."""
        core = self.core
        if core is None:
            return []
        replies: list[bytes] = []
        for addr, packet in core.take_outbox():
            if addr == reply_to:
                replies.append(packet)
            elif addr.startswith("stream#"):
                pass  # the answer to a connection already closed
            elif len(packet) <= self.config.max_packet_size:
                self._send_udp(addr, packet)
            else:
                t = asyncio.ensure_future(self._push_pull_stream(addr, packet))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        self._record_events(core.take_events())
        return replies

    def _send_udp(self, addr: str, packet: bytes) -> None:
        if self._udp is None or self._udp.is_closing():
            return
        try:
            self._udp.sendto(packet, split_addr(addr))
        except (OSError, ValueError):
            self.host_stats["host_udp_errors"] += 1

    async def _push_pull_stream(self, addr: str, packet: bytes) -> None:
        try:
            host, port = split_addr(addr)
            async with asyncio.timeout(STREAM_TIMEOUT):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(len(packet).to_bytes(FRAME_HEADER, "big") + packet)
                    await writer.drain()
                    while (data := await self._read_frame(reader)) is not None:
                        self._receive(data, addr)
                        self._flush()
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
            self.host_stats["host_stream_exchanges"] += 1
        except ValueError:
            self.host_stats["host_stream_dropped_oversized"] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.host_stats["host_stream_errors"] += 1
            log.debug("gossip: push-pull with %s failed: %s", addr, exc)

    async def _resolve(self, seeds: list[str]) -> list[str]:
        """Seeds as ``IP:PORT`` (the addresses datagrams come from); unresolvable ones are logged."""
        out: list[str] = []
        for s in seeds:
            try:
                host, port = split_addr(s)
                if _is_ip(host):
                    out.append(format_addr(host, port))
                    continue
                infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                out.extend(format_addr(str(i[4][0]), port) for i in infos[:1])
            except (OSError, ValueError) as exc:
                log.warning("gossip: cannot resolve seed %s: %s", s, exc, extra={"node": self.name})
        return out

    # ------------------------------------------------------------------ events and the view

    def _record_events(self, events: list[GossipEvent]) -> None:
        for ev in events:
            self.history.setdefault(ev.name, deque(maxlen=HISTORY)).append(ev)
            if ev.kind in (EventKind.DEAD, EventKind.SUSPECT, EventKind.LEAVE):
                log.warning("gossip: member %s %s", ev.name, ev.kind.value, extra={
                    "node": self.name, "member": ev.name, "by": ev.by, "incarnation": ev.incarnation,
                    "confirmations": ",".join(ev.confirmations)})
            else:
                log.info("gossip: member %s %s", ev.name, ev.kind.value, extra={
                    "node": self.name, "member": ev.name, "by": ev.by, "incarnation": ev.incarnation})
            if ev.kind in (EventKind.JOIN, EventKind.ALIVE, EventKind.UPDATE):
                self.joined.set()

    def _unix(self, t: float) -> float:
        """A reading of the loop's monotonic clock as wall-clock Unix seconds."""
        return time.time() - (self.loop.time() - t)

    def stats(self) -> dict[str, int]:
        core = self._core()
        return {**core.stats.as_dict(), **self.host_stats}

    def members_pb(self, name: str = "") -> tuple[list[cluster_pb2.GossipMember], dict[str, int]]:
        """The view for ``Cluster.Members``: every member (this one first, the others by name), or
        only ``name``; and the counters."""
        core = self._core()
        everyone = core.members()
        me, others = everyone[0], sorted(everyone[1:], key=lambda m: m.name)
        out: list[cluster_pb2.GossipMember] = []
        for i, m in enumerate([me, *others]):
            if name and m.name != name:
                continue
            pb = cluster_pb2.GossipMember(
                name=m.name, addr=m.addr, state=int(m.state),  # type: ignore[arg-type]
                incarnation=m.incarnation, meta=m.meta, by=m.by or "",
                since_unix=(self._started_wall if i == 0 and m.state == MemberState.ALIVE
                            else self._unix(m.state_change)))
            for ev in self.history.get(m.name, ()):
                pb.events.add(kind=ev.kind.value, by=ev.by or "", at_unix=self._unix(ev.at),
                              incarnation=ev.incarnation, confirmations=list(ev.confirmations))
            s = core.suspicion(m.name)
            if s is not None and m.state == MemberState.SUSPECT:
                pb.suspected_by = s.suspecter
                pb.confirmed_by.extend(s.confirmers)
            out.append(pb)
        return out, self.stats()
