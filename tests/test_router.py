"""The client's endpoint router without servers: discovery of members from Status answers and the
choice of redirect target."""

from __future__ import annotations

from coterie.client._core import Router
from coterie.client.errors import NotLeader
from coterie.client.types import MemberStatus


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
    import grpc  # type: ignore[import-untyped]

    from coterie.client._core import map_rpc_error
    from coterie.client.errors import InvalidArgument, OutcomeUnknown, ResourceExhausted, Unavailable

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
    from coterie.client._core import session_open_error
    from coterie.client.errors import DeadlineExceeded, InvalidArgument, OutcomeUnknown

    # The last Session.Open attempt timed out (its own outcome unknown): the write itself was never sent.
    opened = DeadlineExceeded("the write did not complete ... may or may not have been applied",
                              retriable=False, last_error=OutcomeUnknown("attempt timed out"))
    err = session_open_error(opened, 2.0)
    assert isinstance(err, DeadlineExceeded) and err.retriable and "not applied" in str(err)
    assert isinstance(err.last_error, OutcomeUnknown)
    bad = InvalidArgument("nope")
    assert session_open_error(bad, 2.0) is bad
