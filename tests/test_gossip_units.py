"""Oracle tests of the pure gossip modules, and the receive path against arbitrary input."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coterie.node.gossip import EventKind, Gossip, GossipConfig, GossipConfigError, MemberState
from coterie.node.gossip.awareness import Awareness
from coterie.node.gossip.broadcast import BroadcastQueue, retransmit_limit
from coterie.node.gossip.codec import (
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
)
from coterie.node.gossip.core import push_pull_interval
from coterie.node.gossip.state import MemberTable, Outcome
from coterie.node.gossip.suspicion import Suspicion, min_suspicion_timeout, suspicion_timeout


def test_config_presets_and_validation() -> None:
    assert GossipConfig.lan().probe_timeout == 0.5
    assert GossipConfig.local().indirect_checks == 1
    assert GossipConfig.local(probe_timeout=0.1).probe_timeout == 0.1  # overrides its own presets too
    for bad in ({"probe_timeout": 1.0}, {"probe_interval": 0.0}, {"indirect_checks": -1},
                {"suspicion_mult": 0}, {"max_packet_size": 100}, {"gossip_interval": float("nan")},
                {"max_push_pull_size": 600}):
        with pytest.raises(GossipConfigError):
            GossipConfig.lan(**bad)


@given(st.integers(0, 10), st.integers(0, 10), st.floats(0.1, 100), st.floats(1, 10))
def test_suspicion_timeout_matches_memberlist_formula(c: int, k: int, lo: float, mult: float) -> None:
    hi = lo * mult
    got = suspicion_timeout(c, k, lo, hi)
    if k == 0:
        assert got == lo
    else:
        oracle = max(lo, hi - (hi - lo) * math.log(c + 1) / math.log(k + 1))
        assert got == pytest.approx(oracle)
    assert lo - 1e-9 <= got <= hi + 1e-9


def test_suspicion_counts_independent_confirmations_only() -> None:
    s = Suspicion("a", 3, k=2, min_timeout=4.0, max_timeout=24.0, start=100.0)
    assert s.deadline == 124.0
    assert not s.confirm("a")  # the suspecter is not a confirmation
    assert s.confirm("b") and not s.confirm("b")
    assert s.deadline == pytest.approx(100 + 24 - 20 * math.log(2) / math.log(3))
    assert s.confirm("c") and s.deadline == 104.0
    assert not s.confirm("d")  # k reached
    assert s.confirmers == ("b", "c")


def test_min_suspicion_timeout() -> None:
    assert min_suspicion_timeout(4, 1, 1.0) == 4.0
    assert min_suspicion_timeout(4, 10, 1.0) == 4.0
    assert min_suspicion_timeout(4, 1000, 0.5) == pytest.approx(4 * 3 * 0.5)


@given(st.lists(st.integers(-5, 5), max_size=30), st.integers(1, 10))
def test_awareness_clamps_and_scales(deltas: list[int], mx: int) -> None:
    a, score = Awareness(mx), 0
    for d in deltas:
        score = min(mx - 1, max(0, score + d))
        assert a.apply_delta(d) == score
    assert a.scale(0.5) == 0.5 * (score + 1)


def test_push_pull_scale() -> None:
    assert push_pull_interval(30, 32) == 30
    assert push_pull_interval(30, 33) == 60
    assert push_pull_interval(30, 1000) == 30 * (math.ceil(math.log2(1000) - 5) + 1)


@given(st.integers(1, 10), st.integers(0, 100000))
def test_retransmit_limit_oracle(mult: int, n: int) -> None:
    assert retransmit_limit(mult, n) == max(1, mult * math.ceil(math.log10(n + 1)))


def test_broadcast_queue_invalidates_packs_and_retires() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue("a", b"old-a")
    q.queue("b", b"b" * 10)
    q.queue("a", b"new-a")  # newer news about a replaces the older
    assert len(q) == 2 and q.pending("a") == b"new-a"
    # newest first among equal transmit counts; the budget counts the per-item overhead
    assert q.take(budget=100, overhead=3, n=9) == [b"new-a", b"b" * 10]
    assert len(q) == 0  # limit 1*ceil(log10(10)) = 1 transmission
    q = BroadcastQueue(retransmit_mult=2)  # n=9: limit 2
    q.queue("x", b"x" * 50)
    q.queue("y", b"y" * 50)
    assert q.take(budget=60, overhead=3, n=9) == [b"y" * 50]
    assert q.take(budget=60, overhead=3, n=9) == [b"x" * 50]  # least transmitted first
    assert q.take(budget=200, overhead=3, n=9) == [b"y" * 50, b"x" * 50]
    assert len(q) == 0 and q.take(200, 3, 9) == []


def test_member_table_incarnation_rules() -> None:
    t = MemberTable()
    assert t.suspect("m", 1, "x", 0) is Outcome.UNKNOWN
    assert t.alive("m", 1, "addr", {}, 0) is Outcome.APPLIED
    assert t.alive("m", 1, "addr", {}, 0) is Outcome.STALE
    assert t.suspect("m", 0, "x", 1) is Outcome.STALE
    assert t.suspect("m", 1, "x", 1) is Outcome.APPLIED
    m = t.get("m")
    assert m is not None and m.state == MemberState.SUSPECT and m.by == "x"
    assert t.suspect("m", 1, "y", 2) is Outcome.CONFIRMED
    assert t.alive("m", 2, "addr2", {"k": "v"}, 3) is Outcome.APPLIED  # refutation
    m = t.get("m")
    assert m is not None and m.state == MemberState.ALIVE and m.addr == "addr2"
    assert t.dead("m", 1, "x", 4) is Outcome.STALE
    assert t.dead("m", 2, "x", 4) is Outcome.APPLIED
    assert _state(t, "m") == MemberState.DEAD
    assert t.suspect("m", 2, "y", 5) is Outcome.IGNORED
    assert t.dead("m", 2, "m", 5) is Outcome.IGNORED
    assert t.alive("m", 3, "addr", {}, 6) is Outcome.APPLIED and _state(t, "m") == MemberState.ALIVE  # rejoin
    assert t.dead("m", 3, "m", 7) is Outcome.APPLIED  # graceful leave
    assert _state(t, "m") == MemberState.LEFT


def _state(t: MemberTable, name: str) -> MemberState | None:
    m = t.get(name)
    return m.state if m is not None else None


SAMPLES: list[Message] = [
    Ping(1, "a", "b", "addr"),
    PingReq(2, "t", "taddr", "s", "saddr", True),
    Ack(3, "a"),
    Nack(4, "a"),
    Suspect(5, "n", "s"),
    Alive(6, "n", "addr", {"dc": "eu", "role": "kv"}),
    Dead(7, "n", "n"),
    PushPull(False, "s", (MemberRecord("s", "saddr", 1, MemberState.ALIVE, {}),
                          MemberRecord("d", "daddr", 4, MemberState.DEAD, {"x": "y"}))),
    Compound((Ping(1, "a", "b", "addr"), Alive(6, "n", "addr", {}))),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_codec_round_trip(msg: object) -> None:
    assert decode(encode(msg), 1 << 20) == msg  # type: ignore[arg-type]


def test_codec_rejects_with_typed_reasons() -> None:
    ok = encode(Ack(1, "a"))
    cases = [
        (b"", DropReason.MALFORMED),
        (bytes([9]) + ok[1:], DropReason.BAD_VERSION),
        (ok + b"\x00", DropReason.MALFORMED),  # trailing data
        (ok[:1] + b"\x93\x63\x01\xa1a", DropReason.UNKNOWN_TYPE),  # type 99
        (ok[:1] + b"\x93\x03\xff\xa1a", DropReason.MALFORMED),  # negative seq
        (ok[:1] + b"\x93\x03\xc3\xa1a", DropReason.MALFORMED),  # bool where an int belongs
        (ok[:1] + b"\x92\x03\x01", DropReason.MALFORMED),  # missing field
        (ok * 100, DropReason.OVERSIZED),
    ]
    for packet, reason in cases:
        with pytest.raises(DecodeError) as ei:
            decode(packet, 500)
        assert ei.value.reason is reason, packet


def _node(name: str = "me", **cfg: object) -> Gossip:
    return Gossip(name, name, GossipConfig.lan(**cfg), random.Random(1), 0.0, {"role": "kv"})


def test_refutes_suspicion_about_itself() -> None:
    g = _node()
    g.receive(encode(Alive(1, "other", "other", {})), "other", 0.0)
    g.receive(encode(Suspect(1, "me", "other")), "other", 1.0)
    assert g.incarnation == 2 and g.stats.refutations == 1
    g.receive(encode(Dead(5, "me", "other")), "other", 2.0)
    assert g.incarnation == 6
    g.receive(encode(Suspect(3, "me", "other")), "other", 2.0)  # older accusation: stale
    assert g.incarnation == 6 and g.stats.stale_updates == 1
    g.tick(10.0)  # a gossip round carries the refutation
    sent = [decode(p, 1 << 20) for _, p in g.take_outbox()]
    alive = [m for p in sent for m in (p.parts if isinstance(p, Compound) else (p,))
             if isinstance(m, Alive) and m.node == "me"]
    assert alive and alive[0].incarnation == 6 and alive[0].meta == {"role": "kv"}


def test_leave_is_not_refuted_and_marks_left() -> None:
    g, other = _node(), _node("other")
    g.receive(encode(Alive(1, "other", "other", {})), "other", 0.0)
    other.receive(encode(Alive(1, "me", "me", {})), "me", 0.0)
    g.leave(1.0)
    g.receive(encode(Suspect(1, "me", "other")), "other", 1.0)
    assert g.incarnation == 1 and g.members()[0].state == MemberState.LEFT
    for t in range(2, 40):
        g.tick(float(t))
        for _, p in g.take_outbox():
            other.receive(p, "me", float(t))
    assert g.pending_broadcasts == 0
    m = other.member("me")
    assert m is not None and m.state == MemberState.LEFT
    assert [e.kind for e in other.take_events()][-1] is EventKind.LEAVE


def _packets() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from([encode(m) for m in SAMPLES])

    def mutate(data: tuple[bytes, list[tuple[int, int]]]) -> bytes:
        b, edits = bytearray(data[0]), data[1]
        for pos, val in edits:
            if b:
                b[pos % len(b)] = val
        return bytes(b)

    mutated = st.tuples(valid, st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)),
                                        min_size=1, max_size=4)).map(mutate)
    truncated = st.tuples(valid, st.integers(0, 200)).map(lambda t: t[0][: t[1]])
    return st.one_of(st.binary(max_size=300), mutated, truncated, valid)


@given(st.lists(_packets(), min_size=1, max_size=20))
def test_receive_never_raises(packets: list[bytes]) -> None:
    g = _node()
    now = 0.0
    for p in packets:
        now += 0.3
        g.receive(p, "peer", now)
        g.tick(now)
        g.take_outbox()
    s = g.stats
    assert s.packets_received == len(packets)
    for p in packets:
        try:
            decode(p, g.config.max_push_pull_size)
        except DecodeError:
            break
    else:
        return
    assert s.dropped_malformed + s.dropped_unknown_type + s.dropped_bad_version + s.dropped_oversized > 0


def test_drops_are_counted_by_reason() -> None:
    g = _node()
    g.receive(b"", "p", 0.0)
    g.receive(b"\x07\x90", "p", 0.0)
    g.receive(encode(Ack(1, "a"))[:1] + b"\x93\x63\x01\xa1a", "p", 0.0)
    g.receive(encode(Compound(tuple(Alive(i + 1, f"n{i}", "x" * 200, {}) for i in range(10)))), "p", 0.0)
    g.receive(encode(Ack(12345, "a")), "p", 0.0)  # an ack for no probe: replayed / late
    g.receive(encode(Alive(1, "x", "x", {})), "p", 0.0)
    g.receive(encode(Alive(1, "x", "x", {})), "p", 0.0)  # replayed update
    s = g.stats
    assert (s.dropped_malformed, s.dropped_bad_version, s.dropped_unknown_type, s.dropped_oversized,
            s.stale_acks, s.stale_updates) == (1, 1, 1, 1, 1, 1)


def test_outgoing_packets_fit_the_packet_size() -> None:
    g = _node(max_packet_size=600)
    for i in range(200):
        g.receive(encode(Alive(1, f"member-{i:04d}", f"10.0.{i}.1:7946", {"k": "v" * 20})), "p", 0.0)
    g.take_outbox()
    for t in range(1, 200):
        g.tick(t * 0.1)
        for _, p in g.take_outbox():
            msg = decode(p, 1 << 22)
            if not isinstance(msg, PushPull):
                assert len(p) <= 600
