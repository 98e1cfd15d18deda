"""The client's routing and call bookkeeping without servers, on a fake clock and a seeded random
source (nothing sleeps): discovery of members from Status answers, the choice of redirect target, the
circuit breaker's cool-down, a call's deadline, attempts and jittered back-off, and the mapping of
gRPC failures to typed errors."""

from __future__ import annotations

import random

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client._call import MAX_ATTEMPTS, MIN_RETRY_SECONDS, CallState, backoff
from coterie.client._errors import map_rpc_error
from coterie.client._router import Router, parse_endpoints
from coterie.client._sessions import session_open_error
from coterie.client.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotLeader,
    OutcomeUnknown,
    ResourceExhausted,
    Unavailable,
)
from coterie.client.types import MemberStatus


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def _st(ep: str, mid: int, role: str, leader: int, known: tuple[tuple[int, str], ...]) -> MemberStatus:
    return MemberStatus(ep, mid, f"n{mid}", role, 2, leader, 5, 5, 3, known_members=known)


BOOK = ((1, "10.0.0.1:7001"), (2, "10.0.0.2:7001"), (3, "10.0.0.3:7001"))


def test_one_endpoint_learns_the_other_members() -> None:
    r = Router(["10.0.0.2:7001"])
    r.learn([_st("10.0.0.2:7001", 2, "follower", 1, BOOK)])
    assert sorted(r.endpoints) == sorted(a for _, a in BOOK)
    assert r.leader == "10.0.0.1:7001"
    assert r.ids == dict(BOOK)


def test_given_endpoints_win_over_advertised_addresses() -> None:
    # The caller reaches the members through forwarded ports; their advertised names do not resolve.
    given = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    book = ((1, "n1:7001"), (2, "n2:7002"), (3, "n3:7003"))
    r = Router(list(given))
    r.learn([_st(given[0], 1, "follower", 2, book), _st(given[1], 2, "leader", 2, book),
             _st(given[2], 3, "follower", 2, book)])
    assert r.endpoints == given
    assert r.leader == given[1]
    # A redirect naming member 3 by its advertised address goes to the endpoint known for id 3.
    r.failure(given[1], NotLeader("not leader", leader_id=3, leader_addr="n3:7003", endpoint=given[1]))
    assert r.leader == given[2]
    assert r.endpoints == given


def test_unknown_member_is_reached_by_its_advertised_address() -> None:
    r = Router(["127.0.0.1:7001"])
    r.failure("127.0.0.1:7001", NotLeader("not leader", leader_id=4, leader_addr="127.0.0.1:7004"))
    assert r.leader == "127.0.0.1:7004" and "127.0.0.1:7004" in r.endpoints
    # Members that did not answer and have no address yet are not added.
    r.learn([_st("127.0.0.1:7001", 1, "follower", 4, ((1, "127.0.0.1:7001"), (5, "")))])
    assert "" not in r.endpoints


class _FakeRpcError(Exception):
    def __init__(self, code: object, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> object:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[()]:
        return ()


def test_load_shedding_answers_are_retriable() -> None:
    SC = grpc.StatusCode  # noqa: N806
    e = map_rpc_error(_FakeRpcError(SC.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"),
                      endpoint="a", write=True, idempotent=True)
    assert isinstance(e, ResourceExhausted) and e.retriable
    e = map_rpc_error(_FakeRpcError(SC.RESOURCE_EXHAUSTED, "overloaded: 4096 proposals pending"),
                      endpoint="a", write=True, idempotent=True)
    assert isinstance(e, ResourceExhausted) and e.retriable
    e = map_rpc_error(_FakeRpcError(SC.RESOURCE_EXHAUSTED, "Received message larger than max"),
                      endpoint="a", write=True, idempotent=True)
    assert isinstance(e, ResourceExhausted) and not e.retriable
    e = map_rpc_error(_FakeRpcError(SC.CANCELLED, "Cancelled"), endpoint="a", write=False, idempotent=True)
    assert isinstance(e, Unavailable) and e.retriable
    e = map_rpc_error(_FakeRpcError(SC.CANCELLED, "Cancelled"), endpoint="a", write=True, idempotent=False)
    assert isinstance(e, OutcomeUnknown) and not e.retriable
    e = map_rpc_error(_FakeRpcError(SC.CANCELLED, "Cancelled"), endpoint="a", write=True, idempotent=True)
    assert isinstance(e, OutcomeUnknown) and e.retriable
    e = map_rpc_error(_FakeRpcError(SC.INVALID_ARGUMENT, "key is empty"), endpoint="a", write=True,
                      idempotent=True)
    assert isinstance(e, InvalidArgument) and not e.retriable


def test_a_write_that_could_not_open_a_session_was_not_applied() -> None:
    # The last Session.Open attempt timed out (its own outcome unknown): the write itself was never sent.
    opened = DeadlineExceeded("the write did not complete ... may or may not have been applied",
                              retriable=False, last_error=OutcomeUnknown("attempt timed out"))
    err = session_open_error(opened, 2.0)
    assert isinstance(err, DeadlineExceeded) and err.retriable and "not applied" in str(err)
    assert isinstance(err.last_error, OutcomeUnknown)
    bad = InvalidArgument("nope")
    assert session_open_error(bad, 2.0) is bad


# ==================================================================================== on a fake clock


def test_parse_endpoints() -> None:
    assert parse_endpoints(" http://a:1, b:2 ,a:1,") == ["a:1", "b:2"]
    assert parse_endpoints(["a:1", "a:1", "c:3"]) == ["a:1", "c:3"]
    with pytest.raises(ValueError):
        parse_endpoints(" , ")


def test_breaker_opens_after_threshold_and_closes_after_cooldown() -> None:
    clock = FakeClock()
    eps = ["a:1", "b:1", "c:1"]
    r = Router(eps, threshold=2, cooldown=5.0, clock=clock)
    assert [r.pick() for _ in range(4)] == ["a:1", "b:1", "c:1", "a:1"]  # round robin, in order given
    down = Unavailable("connect failed")
    assert not r.failure("b:1", down)  # one failure: still usable
    assert r.discovery_targets() == eps
    assert not r.failure("b:1", down)  # the threshold: open for 5 s
    assert r.breakers["b:1"].open_until == clock.now + 5.0
    assert "b:1" not in [r.pick() for _ in range(6)]
    assert r.discovery_targets() == ["a:1", "c:1"]
    clock.advance(4.999)
    assert "b:1" not in [r.pick() for _ in range(6)]
    clock.advance(0.001)  # the cool-down is over
    assert "b:1" in [r.pick() for _ in range(3)]
    assert r.discovery_targets() == eps
    r.success("b:1")
    assert r.breakers["b:1"].failures == 0 and r.breakers["b:1"].open_until == 0.0


def test_every_breaker_open_picks_the_one_closing_first() -> None:
    clock = FakeClock()
    r = Router(["a:1", "b:1"], threshold=1, cooldown=10.0, clock=clock)
    r.failure("b:1", OutcomeUnknown("timed out"))
    clock.advance(3.0)
    r.failure("a:1", OutcomeUnknown("timed out"))
    assert r.pick() == "b:1" and r.pick() == "b:1"
    assert r.discovery_targets() == ["a:1", "b:1"]  # none usable: ask them all


def test_leader_is_forgotten_when_it_fails_and_avoided() -> None:
    clock = FakeClock()
    r = Router(["a:1", "b:1", "c:1"], threshold=3, clock=clock)
    r.leader = "b:1"
    assert r.pick() == "b:1" and not r.needs_discovery()
    assert not r.failure("b:1", Unavailable("member unavailable"))  # back off and rediscover
    assert r.leader is None and r.needs_discovery()
    r.leader = "b:1"
    assert r.pick_avoiding("b:1") != "b:1" and r.leader is None
    # A redirect names the leader: go at once; a NotLeader without a hint is no redirect.
    assert r.failure("a:1", NotLeader("not the leader", leader_addr="c:1"))
    assert r.leader == "c:1"
    assert not r.failure("c:1", NotLeader("not the leader", leader_addr="c:1"))
    assert r.leader is None


def test_call_deadline_and_attempt_timeouts_follow_the_clock() -> None:
    clock = FakeClock()
    c = CallState(9.0, False, True, clock=clock, rng=random.Random(1))
    assert c.started == clock.now and c.remaining() == 9.0
    assert c.attempt_timeout() == 3.0  # a third of the call
    assert c.exhausted() is None
    clock.advance(8.5)
    assert c.attempt_timeout() == pytest.approx(0.5)  # never past the deadline
    c.attempts = 1
    clock.advance(0.5 - MIN_RETRY_SECONDS / 2)  # too little left to start a retry
    err = c.exhausted()
    assert isinstance(err, DeadlineExceeded) and err.retriable and "call did not complete" in str(err)
    # ... but the first attempt is always made.
    c.attempts = 0
    assert c.exhausted() is None
    short = CallState(0.5, False, True, clock=clock)
    assert short.attempt_timeout() == 0.5  # at least 1 s, within the call's timeout
    many = CallState(60.0, False, True, clock=clock)
    many.attempts = MAX_ATTEMPTS
    assert isinstance(many.exhausted(), DeadlineExceeded)


def test_a_write_that_may_have_been_applied_says_so_at_its_deadline() -> None:
    clock = FakeClock()
    c = CallState(2.0, True, True, clock=clock)
    c.failed(Unavailable("failed to connect to all addresses"))  # never reached a member
    assert not c.maybe_applied
    c.failed(Unavailable("member unavailable: socket closed"))  # it may have been received
    assert c.maybe_applied
    c.attempts = 2
    clock.advance(2.0)
    err = c.exhausted()
    assert isinstance(err, DeadlineExceeded) and not err.retriable
    assert "may or may not have been applied" in str(err) and err.last_error is c.last


def test_backoff_is_jittered_exponential_and_deterministic_with_a_seed() -> None:
    draws = [backoff(a, random.Random(7)) for a in range(8)]
    assert draws == [backoff(a, random.Random(7)) for a in range(8)]
    for a, d in enumerate(draws):
        assert 0.0 <= d <= min(1.0, 0.05 * 2 ** a)
    rng = random.Random(3)
    assert max(backoff(40, rng) for _ in range(200)) <= 1.0  # capped
    clock = FakeClock()
    c = CallState(10.0, False, True, clock=clock, rng=random.Random(5))
    expected_rng = random.Random(5)
    for i in range(5):
        assert c.next_backoff() == backoff(i, expected_rng)
    assert c.backoffs == 5
    clock.advance(10.0 - 0.001)
    assert c.next_backoff() <= 0.001  # never past the deadline
    clock.advance(1.0)
    assert c.next_backoff() == 0.0


def test_a_router_without_discovery_keeps_to_the_endpoints_given() -> None:
    r = Router(["a:1"], clock=FakeClock(), discover=False)
    r.learn([MemberStatus("a:1", member_id=1, role="follower", leader_id=2,
                          known_members=((1, "a:1"), (2, "b:2"), (3, "c:3")))])
    assert r.endpoints == ["a:1"] and r.leader is None
    # A redirect to a member it was not given is not followed: back off and ask again.
    assert r.failure("a:1", NotLeader("not the leader", leader_id=2, leader_addr="b:2")) is False
    assert r.endpoints == ["a:1"] and r.pick() == "a:1"
    # With discovery (the default) the same answers add the members and follow the hint.
    d = Router(["a:1"], clock=FakeClock())
    d.learn([MemberStatus("a:1", member_id=1, role="follower", leader_id=2,
                          known_members=((1, "a:1"), (2, "b:2"), (3, "c:3")))])
    assert d.endpoints == ["a:1", "b:2", "c:3"] and d.leader == "b:2"
