"""The pure SWIM + Lifeguard gossip core (SWIM: Das et al. 2002; Lifeguard: Dadgar et al. 2018;
modelled on hashicorp/memberlist).

The host owns the transport and the clock. It calls:

* ``receive(packet, from_addr, now)`` for every datagram or stream message it gets;
* ``tick(now)`` at least by :meth:`Gossip.next_deadline` (calling it more often is harmless);
* ``take_outbox()`` after any call, and sends each ``(addr, bytes)``: over UDP when the packet is at most
  ``config.max_packet_size`` bytes, otherwise (only push-pull can be larger) over a stream;
* ``take_events()`` for membership changes.

``now`` is the host's monotonic clock in seconds and must not go backwards. Randomness comes only from
the ``random.Random`` passed in. No call raises on peer input: bad packets are dropped and counted in
:attr:`Gossip.stats`.

Failure detection (SWIM 3.1, 4.3): every probe period one member, round-robin over a shuffled list, is
pinged; without an ack within the probe timeout, ``indirect_checks`` random members are asked to ping
it (ping-req); helpers that get no ack send a nack (Lifeguard 4.1); without any ack by the end of the
period the member is suspected (SWIM 4.2), and declared dead when the suspicion timer (Lifeguard 4.2,
:mod:`.suspicion`) fires unless it refutes first. Dissemination (SWIM 4.1): updates are piggybacked on
pings and acks and sent in gossip rounds, each a limited number of times (:mod:`.broadcast`).
Anti-entropy: a periodic full-state push-pull with one random member, also used to join.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING

from .awareness import Awareness
from .broadcast import BroadcastQueue
from .codec import (
    COMPOUND_OVERHEAD,
    MAX_INCARNATION,
    MAX_META_CHARS,
    MAX_META_ENTRIES,
    MAX_NAME,
    PART_OVERHEAD,
    VERSION,
    Ack,
    Alive,
    Compound,
    Dead,
    DecodeError,
    DropReason,
    MemberRecord,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    decode,
    encode,
    encode_body,
    encode_compound,
)
from .config import GossipConfig
from .state import Member, MemberState, MemberTable, Outcome
from .suspicion import Suspicion, min_suspicion_timeout

if TYPE_CHECKING:
    import random


class EventKind(Enum):
    JOIN = "join"
    """A member became known, or came back from dead/left with a higher incarnation."""
    UPDATE = "update"
    """An alive member changed its address or meta."""
    SUSPECT = "suspect"
    """A member is suspected; ``by`` is the suspecter."""
    ALIVE = "alive"
    """A suspected member refuted the suspicion."""
    DEAD = "dead"
    """A member was declared dead; ``by`` declared it (this member when its own timer fired, then
    ``confirmations`` lists who confirmed the suspicion)."""
    LEAVE = "leave"
    """A member left gracefully."""


@dataclass(frozen=True, slots=True)
class GossipEvent:
    kind: EventKind
    name: str
    addr: str
    incarnation: int
    at: float
    """The host's ``now`` when this member learned it."""
    by: str | None
    meta: dict[str, str]
    confirmations: tuple[str, ...] = ()


@dataclass(slots=True)
class GossipStats:
    """Counters since creation. ``dropped_*`` and ``stale_*`` count peer input that was discarded."""

    packets_received: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    dropped_malformed: int = 0
    dropped_unknown_type: int = 0
    dropped_bad_version: int = 0
    dropped_oversized: int = 0
    stale_acks: int = 0
    """Acks/nacks for no probe in flight: late, duplicated or replayed."""
    stale_updates: int = 0
    """Alive/suspect/dead older than what is known: out of order or replayed."""
    misdirected_pings: int = 0
    unrefutable: int = 0
    probes: int = 0
    probes_failed: int = 0
    indirect_probes_sent: int = 0
    indirect_pings_relayed: int = 0
    nacks_sent: int = 0
    nacks_received: int = 0
    suspicions_raised: int = 0
    confirmations: int = 0
    refutations: int = 0
    deaths_declared: int = 0
    push_pulls_sent: int = 0
    push_pulls_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Probe:
    target: str
    addr: str
    seq: int
    timeout_at: float
    end_at: float
    acked: bool = False
    indirect_sent: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    orig_seq: int
    requester: str
    nack: bool
    deadline: float


def push_pull_interval(interval: float, n: int) -> float:
    """memberlist ``pushPullScale``: ``interval`` up to 32 members, then
    ``interval * (ceil(log2(n) - log2(32)) + 1)``."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


def _check_meta(meta: dict[str, str]) -> dict[str, str]:
    if len(meta) > MAX_META_ENTRIES:
        raise ValueError(f"meta has {len(meta)} entries, at most {MAX_META_ENTRIES} allowed")
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > MAX_META_CHARS \
                or len(v) > MAX_META_CHARS:
            raise ValueError(f"meta entries must be strings of at most {MAX_META_CHARS} characters")
    return dict(meta)


class Gossip:
    """One member's gossip state machine. See the module docstring for the host contract."""

    def __init__(self, name: str, addr: str, config: GossipConfig, rng: random.Random, now: float,
                 meta: dict[str, str] | None = None) -> None:
        config.validate()
        if not name or len(name) > MAX_NAME or len(addr) > MAX_NAME:
            raise ValueError(f"name must be 1..{MAX_NAME} characters and addr at most {MAX_NAME}")
        self.name = name
        self.addr = addr
        self.config = config
        self.stats = GossipStats()
        self._rng = rng
        self._meta = _check_meta(meta or {})
        self._incarnation = 1
        self._left = False
        self._left_at = now
        self._table = MemberTable()
        self._order: list[str] = []  # the probe list (others), reshuffled at each wrap (SWIM 4.3)
        self._probe_index = 0
        self._broadcasts = BroadcastQueue(config.retransmit_mult)
        self._awareness = Awareness(config.awareness_max_multiplier if config.lifeguard else 1)
        self._suspicions: dict[str, Suspicion] = {}
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._outbox: list[tuple[str, bytes]] = []
        self._events: list[GossipEvent] = []
        # Staggered starts, so members started together do not probe in lockstep.
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull = now + rng.uniform(0, config.push_pull_interval)
        self._queue_self_alive()

    # ------------------------------------------------------------------ host API

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def health_score(self) -> int:
        """The Lifeguard local health score (0 = healthy)."""
        return self._awareness.score

    @property
    def pending_broadcasts(self) -> int:
        """Updates still to be piggybacked; after :meth:`leave`, keep ticking until this is 0."""
        return len(self._broadcasts)

    def members(self) -> list[Member]:
        """Every known member, this one first (copies)."""
        me = Member(self.name, self.addr, self._incarnation,
                    MemberState.LEFT if self._left else MemberState.ALIVE, dict(self._meta),
                    self._left_at if self._left else 0.0, self.name)
        return [me] + [m.copy() for m in self._table.values()]

    def member(self, name: str) -> Member | None:
        if name == self.name:
            return self.members()[0]
        m = self._table.get(name)
        return None if m is None else m.copy()

    def suspicion(self, name: str) -> Suspicion | None:
        """The running suspicion timer about ``name``, if any (read-only use)."""
        return self._suspicions.get(name)

    def join(self, seeds: list[str], now: float) -> int:
        """Send a push-pull state exchange to each seed address (not our own); return how many. The
        replies fill the member table; call again if none arrives."""
        n = 0
        for addr in seeds:
            if addr != self.addr:
                self._send_push_pull(addr, reply=False)
                n += 1
        return n

    def leave(self, now: float) -> None:
        """Leave gracefully: broadcast ``dead(self, source=self)`` (members mark us ``LEFT``), stop
        probing. Keep calling ``tick`` until :attr:`pending_broadcasts` is 0 (or a deadline) so the
        news goes out, then stop."""
        if self._left:
            return
        self._left = True
        self._left_at = now
        self._probe = None
        self._broadcasts.queue(self.name, encode_body(Dead(self._incarnation, self.name, self.name)))

    def update_meta(self, meta: dict[str, str], now: float) -> None:
        """Publish new meta tags: raise the incarnation and broadcast alive."""
        self._meta = _check_meta(meta)
        self._incarnation += 1
        self._queue_self_alive()

    def take_outbox(self) -> list[tuple[str, bytes]]:
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[GossipEvent]:
        ev, self._events = self._events, []
        return ev

    def next_deadline(self) -> float:
        """The earliest ``now`` at which :meth:`tick` has work to do."""
        t = self._next_gossip if self.config.gossip_interval > 0 else math.inf
        if not self._left:
            t = min(t, self._next_probe)
            if self.config.push_pull_interval > 0:
                t = min(t, self._next_push_pull)
        p = self._probe
        if p is not None:
            t = min(t, p.end_at if (p.acked or p.indirect_sent) else p.timeout_at)
        for r in self._relays.values():
            t = min(t, r.deadline)
        for s in self._suspicions.values():
            t = min(t, s.deadline)
        return t

    def tick(self, now: float) -> None:
        cfg = self.config
        self._expire_relays(now)
        self._expire_suspicions(now)
        self._advance_probe(now)
        if cfg.gossip_interval > 0 and now >= self._next_gossip:
            self._gossip(now)
            self._next_gossip += cfg.gossip_interval
            if self._next_gossip <= now:  # the host fell behind: skip the missed rounds
                self._next_gossip = now + cfg.gossip_interval
        if not self._left and cfg.push_pull_interval > 0 and now >= self._next_push_pull:
            live = self._random_members(1, lambda m: m.state == MemberState.ALIVE)
            if live:
                self._send_push_pull(live[0].addr, reply=False)
            self._next_push_pull = now + push_pull_interval(cfg.push_pull_interval, len(self._table) + 1)

    def receive(self, packet: bytes, from_addr: str, now: float) -> None:
        """Handle one packet from ``from_addr``. Never raises on its content."""
        self.stats.packets_received += 1
        self.stats.bytes_received += len(packet)
        try:
            msg = decode(packet, self.config.max_push_pull_size)
        except DecodeError as e:
            self._count_drop(e.reason)
            return
        if len(packet) > self.config.max_packet_size and not isinstance(msg, PushPull):
            self._count_drop(DropReason.OVERSIZED)
            return
        if isinstance(msg, Compound):
            for part in msg.parts:
                self._handle(part, from_addr, now)
        else:
            self._handle(msg, from_addr, now)

    # ------------------------------------------------------------------ receiving

    def _count_drop(self, reason: DropReason) -> None:
        name = f"dropped_{reason.value}"
        setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _handle(self, msg: Message, from_addr: str, now: float) -> None:
        match msg:
            case Ping():
                if msg.target != self.name:
                    self.stats.misdirected_pings += 1
                    return
                self._send(from_addr, Ack(msg.seq, self.name))
            case PingReq():
                self._on_ping_req(msg, from_addr, now)
            case Ack():
                self._on_ack(msg, now)
            case Nack():
                p = self._probe
                if p is not None and p.seq == msg.seq and not p.acked:
                    p.nacks += 1
                    self.stats.nacks_received += 1
                else:
                    self.stats.stale_acks += 1
            case Alive():
                self._on_alive(msg, now, rebroadcast=True)
            case Suspect():
                self._on_suspect(msg, now)
            case Dead():
                self._on_dead(msg, now)
            case PushPull():
                self._on_push_pull(msg, from_addr, now)
            case Compound():  # decode forbids nesting; a top-level compound is unpacked by receive
                self.stats.dropped_malformed += 1

    def _on_ping_req(self, msg: PingReq, from_addr: str, now: float) -> None:
        if msg.target == self.name:
            self._send(from_addr, Ack(msg.seq, self.name))
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(msg.seq, from_addr, msg.nack, now + self.config.probe_timeout)
        self.stats.indirect_pings_relayed += 1
        self._send(msg.target_addr, Ping(seq, msg.target, self.name, self.addr))

    def _on_ack(self, msg: Ack, now: float) -> None:
        p = self._probe
        if p is not None and p.seq == msg.seq and not p.acked:
            p.acked = True
            if now <= p.timeout_at:  # a direct ack in time: a sign of our own health (Lifeguard 4.1)
                self._awareness.apply_delta(-1)
            return
        r = self._relays.pop(msg.seq, None)
        if r is not None:
            self._send(r.requester, Ack(r.orig_seq, self.name))
            return
        self.stats.stale_acks += 1

    def _on_alive(self, msg: Alive, now: float, rebroadcast: bool) -> None:
        if msg.node == self.name:
            if msg.incarnation < self._incarnation:
                self.stats.stale_updates += 1
            elif msg.incarnation > self._incarnation or msg.addr != self.addr or msg.meta != self._meta:
                self._refute(msg.incarnation, now)  # someone claims a newer or different us
            return
        prev = self._table.get(msg.node)
        prev_state = None if prev is None else prev.state
        prev_view = None if prev is None else (prev.addr, dict(prev.meta))
        outcome = self._table.alive(msg.node, msg.incarnation, msg.addr, msg.meta, now)
        if outcome is Outcome.STALE:
            self.stats.stale_updates += 1
            return
        if prev is None:
            self._order.append(msg.node)  # a random place in the probe list (memberlist does the same)
            j = self._rng.randrange(len(self._order))
            self._order[-1], self._order[j] = self._order[j], self._order[-1]
        self._suspicions.pop(msg.node, None)
        if rebroadcast:
            self._broadcasts.queue(msg.node, encode_body(msg))
        if prev_state is None or prev_state in (MemberState.DEAD, MemberState.LEFT):
            kind: EventKind | None = EventKind.JOIN
        elif prev_state == MemberState.SUSPECT:
            kind = EventKind.ALIVE
        else:
            kind = EventKind.UPDATE if prev_view != (msg.addr, msg.meta) else None
        if kind is not None:
            self._event(kind, msg.node, now, msg.node)

    def _refuted(self, msg: Suspect | Dead, now: float) -> bool:
        """True if ``msg`` accuses this member itself (SWIM 4.2: it refutes with a higher incarnation
        unless it has left; an accusation older than its incarnation is stale): the caller stops."""
        if msg.node != self.name:
            return False
        if self._left:
            return True
        if msg.incarnation < self._incarnation:
            self.stats.stale_updates += 1
            return True
        self._refute(msg.incarnation, now)
        return True

    def _on_suspect(self, msg: Suspect, now: float) -> None:
        if self._refuted(msg, now):
            return
        outcome = self._table.suspect(msg.node, msg.incarnation, msg.source, now)
        if outcome is Outcome.STALE:
            self.stats.stale_updates += 1
        elif outcome is Outcome.CONFIRMED:
            s = self._suspicions.get(msg.node)
            if s is not None and s.confirm(msg.source):
                self.stats.confirmations += 1
                self._broadcasts.queue(msg.node, encode_body(msg))
        elif outcome is Outcome.APPLIED:
            self._start_suspicion(msg.node, msg.incarnation, msg.source, now)
            self._broadcasts.queue(msg.node, encode_body(msg))
            self._event(EventKind.SUSPECT, msg.node, now, msg.source)

    def _on_dead(self, msg: Dead, now: float) -> None:
        if self._refuted(msg, now):
            return
        outcome = self._table.dead(msg.node, msg.incarnation, msg.source, now)
        if outcome is Outcome.STALE:
            self.stats.stale_updates += 1
        elif outcome is Outcome.APPLIED:
            self._suspicions.pop(msg.node, None)
            self._broadcasts.queue(msg.node, encode_body(msg))
            kind = EventKind.LEAVE if msg.source == msg.node else EventKind.DEAD
            self._event(kind, msg.node, now, msg.source)

    def _on_push_pull(self, msg: PushPull, from_addr: str, now: float) -> None:
        self.stats.push_pulls_received += 1
        if not msg.reply:
            self._send_push_pull(from_addr, reply=True)
        for r in msg.members:
            if r.state == MemberState.ALIVE:
                # A member new to us is not re-broadcast: the rest of the cluster heard of it through its
                # own join broadcast, and re-broadcasting a whole table on every join would flood.
                # Newer news about a known member is (memberlist re-broadcasts everything).
                known = r.name in self._table or r.name == self.name
                self._on_alive(Alive(r.incarnation, r.name, r.addr, r.meta), now,
                               rebroadcast=known or r.name == msg.source)
            elif r.state == MemberState.LEFT:
                self._on_dead(Dead(r.incarnation, r.name, r.name), now)
            else:
                # memberlist mergeState: a remote "dead" becomes a local suspicion, so a member that
                # only one side thinks dead gets the chance to refute.
                self._on_suspect(Suspect(r.incarnation, r.name, msg.source), now)

    # ------------------------------------------------------------------ timers

    def _expire_relays(self, now: float) -> None:
        if not self._relays:
            return
        for seq in [s for s, r in self._relays.items() if now >= r.deadline]:
            r = self._relays.pop(seq)
            if r.nack:
                self.stats.nacks_sent += 1
                self._send(r.requester, Nack(r.orig_seq, self.name))

    def _expire_suspicions(self, now: float) -> None:
        if not self._suspicions:
            return
        for name in [n for n, s in self._suspicions.items() if now >= s.deadline]:
            s = self._suspicions.pop(name)
            m = self._table.get(name)
            if m is None or m.state != MemberState.SUSPECT:
                continue
            if self._table.dead(name, m.incarnation, self.name, now) is Outcome.APPLIED:
                self.stats.deaths_declared += 1
                self._broadcasts.queue(name, encode_body(Dead(m.incarnation, name, self.name)))
                self._event(EventKind.DEAD, name, now, self.name, s.confirmers)

    def _advance_probe(self, now: float) -> None:
        cfg = self.config
        p = self._probe
        if p is not None:
            if not p.acked and not p.indirect_sent and now >= p.timeout_at:
                p.indirect_sent = True
                helpers = self._random_members(
                    cfg.indirect_checks,
                    lambda m: m.state == MemberState.ALIVE and m.name != p.target)
                for h in helpers:
                    self.stats.indirect_probes_sent += 1
                    self._send(h.addr, PingReq(p.seq, p.target, p.addr, self.name, self.addr,
                                               cfg.lifeguard))
                p.nacks_expected = len(helpers) if cfg.lifeguard else 0
            if now >= p.end_at:
                self._probe = None
                if not p.acked:
                    self._probe_failed(p, now)
        if self._probe is None and not self._left and now >= self._next_probe:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        cfg = self.config
        interval = self._awareness.scale(cfg.probe_interval)
        self._next_probe = now + interval
        target = self._next_target(now)
        if target is None:
            return
        self.stats.probes += 1
        seq = self._next_seq()
        self._probe = _Probe(target.name, target.addr, seq, now + self._awareness.scale(cfg.probe_timeout),
                             now + interval)
        ping = Ping(seq, target.name, self.name, self.addr)
        if cfg.lifeguard and target.state == MemberState.SUSPECT:
            # Lifeguard's buddy system: tell the suspect directly, so it refutes within one round trip.
            self._send(target.addr, ping, extra=[encode_body(Suspect(target.incarnation, target.name,
                                                                     self.name))])
        else:
            self._send(target.addr, ping)

    def _probe_failed(self, p: _Probe, now: float) -> None:
        self.stats.probes_failed += 1
        if self.config.lifeguard:
            if p.nacks_expected > 0:
                missing = p.nacks_expected - p.nacks
                if missing > 0:
                    self._awareness.apply_delta(missing)
            else:
                self._awareness.apply_delta(1)
        m = self._table.get(p.target)
        if m is None or m.state != MemberState.ALIVE:
            return
        self.stats.suspicions_raised += 1
        self._on_suspect(Suspect(m.incarnation, m.name, self.name), now)

    def _start_suspicion(self, name: str, incarnation: int, source: str, now: float) -> None:
        cfg = self.config
        n = len(self._table) + 1
        k = cfg.suspicion_mult - 2 if cfg.lifeguard else 0
        if n - 2 < k:
            k = 0
        lo = min_suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        hi = cfg.suspicion_max_timeout_mult * lo if cfg.lifeguard else lo
        self._suspicions[name] = Suspicion(source, incarnation, k, lo, hi, now)

    def _next_target(self, now: float) -> Member | None:
        for _ in range(len(self._order) + 1):
            if self._probe_index >= len(self._order):
                self._reshuffle(now)
                self._probe_index = 0
                if not self._order:
                    return None
            m = self._table.get(self._order[self._probe_index])
            self._probe_index += 1
            if m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT):
                return m
        return None

    def _reshuffle(self, now: float) -> None:
        """Drop members dead or left for longer than ``gossip_to_the_dead_time``; shuffle the rest."""
        keep: list[str] = []
        for name in self._order:
            m = self._table.get(name)
            if m is None:
                continue
            if m.state in (MemberState.DEAD, MemberState.LEFT) and \
                    now - m.state_change > self.config.gossip_to_the_dead_time:
                self._table.remove(name)
                continue
            keep.append(name)
        self._rng.shuffle(keep)
        self._order = keep

    def _gossip(self, now: float) -> None:
        if not self._broadcasts:
            return
        dead_time = self.config.gossip_to_the_dead_time

        def reachable(m: Member) -> bool:  # dead members still hear gossip for a while, to refute
            return m.state in (MemberState.ALIVE, MemberState.SUSPECT) or now - m.state_change <= dead_time

        targets = self._random_members(self.config.gossip_nodes, reachable)
        budget = self.config.max_packet_size - COMPOUND_OVERHEAD
        for m in targets:
            parts = self._broadcasts.take(budget, PART_OVERHEAD, len(self._table) + 1)
            if not parts:
                break
            self._emit(m.addr, encode_compound(parts) if len(parts) > 1 else bytes((VERSION,)) + parts[0])

    # ------------------------------------------------------------------ sending

    def _random_members(self, k: int, pred: Callable[[Member], bool]) -> list[Member]:
        """Up to k distinct random members satisfying ``pred`` (memberlist ``kRandomNodes``: 3n tries)."""
        out: list[Member] = []
        order = self._order
        if k <= 0 or not order:
            return out
        seen: set[str] = set()
        for _ in range(3 * len(order)):
            if len(out) >= k:
                break
            name = order[self._rng.randrange(len(order))]
            if name in seen:
                continue
            seen.add(name)
            m = self._table.get(name)
            if m is not None and pred(m):
                out.append(m)
        return out

    def _send(self, addr: str, msg: Message, extra: list[bytes] | None = None) -> None:
        """Send ``msg`` with as many pending broadcasts piggybacked as fit ``max_packet_size``."""
        body = encode_body(msg)
        parts = [body, *(extra or [])]
        used = COMPOUND_OVERHEAD + sum(len(b) + PART_OVERHEAD for b in parts)
        parts += self._broadcasts.take(self.config.max_packet_size - used, PART_OVERHEAD,
                                       len(self._table) + 1)
        self._emit(addr, encode_compound(parts) if len(parts) > 1 else bytes((VERSION,)) + body)

    def _send_push_pull(self, addr: str, reply: bool) -> None:
        records = [MemberRecord(self.name, self.addr, self._incarnation,
                                MemberState.LEFT if self._left else MemberState.ALIVE, dict(self._meta))]
        others = sorted(self._table.values(), key=lambda m: m.state in (MemberState.DEAD, MemberState.LEFT))
        records += [MemberRecord(m.name, m.addr, m.incarnation, m.state, m.meta) for m in others]
        packet = encode(PushPull(reply, self.name, tuple(records)))
        while len(packet) > self.config.max_push_pull_size and len(records) > 1:
            records = records[: max(1, len(records) * 9 // 10)]  # dead/left go first (sorted last)
            packet = encode(PushPull(reply, self.name, tuple(records)))
        self.stats.push_pulls_sent += 1
        self._emit(addr, packet)

    def _emit(self, addr: str, packet: bytes) -> None:
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(packet)
        self._outbox.append((addr, packet))

    # ------------------------------------------------------------------ self

    def _queue_self_alive(self) -> None:
        self._broadcasts.queue(self.name, encode_body(Alive(self._incarnation, self.name, self.addr,
                                                            self._meta)))

    def _refute(self, accused: int, now: float) -> None:
        """SWIM 4.2: raise our incarnation above the accusation and broadcast alive."""
        if accused >= MAX_INCARNATION:
            self.stats.unrefutable += 1
            return
        self._incarnation = max(self._incarnation, accused) + 1
        self.stats.refutations += 1
        if self.config.lifeguard:
            self._awareness.apply_delta(1)  # being suspected hints that we are the slow one
        self._queue_self_alive()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event(self, kind: EventKind, name: str, now: float, by: str | None,
               confirmations: tuple[str, ...] = ()) -> None:
        m = self._table.get(name)
        if m is None:
            return
        self._events.append(GossipEvent(kind, name, m.addr, m.incarnation, now, by, dict(m.meta),
                                        confirmations))
