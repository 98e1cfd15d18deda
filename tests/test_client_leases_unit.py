"""The client's leases, fences, locks and elections without a cluster: the validity arithmetic on a
fake clock, the keep-alive loop and the ``async with`` loss semantics over fake streams, the error
mapping of fence and lease refusals, the fence header of writes, the contender-key helpers and
:class:`FencingGuard`."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable
from typing import Any, cast

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import AsyncClient, Fence, FenceRejected, FencingGuard, LeaseLost, LeaseNotFound
from coterie.client._call import CallState
from coterie.client._errors import map_rpc_error
from coterie.client._lease import (
    DRIFT_BOUND,
    LOCK_PREFIX,
    LeaseValidity,
    contender_key,
    contenders,
    is_contender,
    name_prefix,
    predecessor,
    ttl_ms,
)
from coterie.client._sessions import SessionState, failed_write
from coterie.client.types import KeyValue, Op
from coterie.v1 import kv_pb2, lease_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY

# ================================================================================ pure parts


def test_validity_counts_from_the_send_time_of_the_answered_request() -> None:
    v = LeaseValidity()
    assert v.answered(sent=100.0, granted_ms=9000, now=100.5)
    assert v.valid_until == pytest.approx(100.0 + 9.0 * (1 - DRIFT_BOUND))
    assert v.ttl == 9.0
    assert v.next_keepalive() == pytest.approx(103.0)
    # a later answer to an earlier request never moves the deadline back
    assert v.answered(sent=99.0, granted_ms=9000, now=101.0)
    assert v.valid_until == pytest.approx(100.0 + 9.0 * 0.99)
    assert v.answered(sent=103.0, granted_ms=9000, now=103.2)
    assert v.valid_until == pytest.approx(103.0 + 8.91)
    assert not v.check(111.90)
    assert v.check(111.91)  # 103 + 8.91
    assert v.lost


def test_validity_stays_lost_and_ttl_zero_loses_it() -> None:
    v = LeaseValidity()
    v.answered(0.0, 1000, 0.1)
    assert not v.answered(0.5, 1000, 1.0)  # answered after 0.99: too late, lost
    assert v.lost and v.valid_until == pytest.approx(0.99)
    assert not v.answered(1.0, 1000, 1.1)  # nothing revives it
    assert v.lost
    w = LeaseValidity()
    w.answered(0.0, 1000, 0.1)
    assert not w.answered(0.2, 0, 0.3)
    assert w.lost


def test_validity_of_an_answer_slower_than_the_ttl_is_lost_at_once() -> None:
    v = LeaseValidity()
    assert not v.answered(sent=0.0, granted_ms=500, now=0.6)
    assert v.lost


def test_ttl_and_key_helpers() -> None:
    assert ttl_ms(10) == 10_000 and ttl_ms(0.0011) == 2 and ttl_ms(0.5) == 500
    for bad in (0, -1, math.inf, math.nan, True, "3"):
        with pytest.raises(ValueError):
            ttl_ms(bad)  # type: ignore[arg-type]
    p = name_prefix(LOCK_PREFIX, "jobs/compactor")
    assert p == b"coterie/locks/jobs/compactor/"
    k = contender_key(p, 0x1F)
    assert k == b"coterie/locks/jobs/compactor/000000000000001f"
    assert is_contender(p, k) and not is_contender(p, p + b"x/000000000000001f")
    for bad_name in ("", "/a", "a/"):
        with pytest.raises(ValueError):
            name_prefix(LOCK_PREFIX, bad_name)

    def kv(lid: int, rev: int) -> KeyValue:
        return KeyValue(contender_key(p, lid), b"", rev, rev, 1, lid)

    kvs = [kv(3, 30), kv(1, 10), kv(2, 20), KeyValue(p + b"nested/0000000000000009", b"", 5, 5, 1, 9)]
    assert [x.create_revision for x in contenders(p, kvs)] == [10, 20, 30]
    assert predecessor(p, kvs, 30) == kv(2, 20)  # the immediate predecessor only
    assert predecessor(p, kvs, 20) == kv(1, 10)
    assert predecessor(p, kvs, 10) is None


# ================================================================================ errors


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, detail: kv_pb2.ErrorDetail) -> None:
        self._code, self._detail = code, detail

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._detail.message

    def trailing_metadata(self) -> list[tuple[str, bytes]]:
        return [(ERROR_DETAIL_KEY, self._detail.SerializeToString())]


def test_fence_and_lease_refusals_map_to_typed_errors() -> None:
    fr = map_rpc_error(FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, kv_pb2.ErrorDetail(
        code=kv_pb2.ERROR_CODE_FENCE_REJECTED, message="fence", fence_token=12, holder_token=40)),
        endpoint="e", write=True, idempotent=True)
    assert isinstance(fr, FenceRejected) and (fr.token, fr.holder_token) == (12, 40)
    assert not fr.retriable
    ln = map_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, kv_pb2.ErrorDetail(
        code=kv_pb2.ERROR_CODE_LEASE_NOT_FOUND, message="no lease", lease_id=77)),
        endpoint="e", write=True, idempotent=True)
    assert isinstance(ln, LeaseNotFound) and ln.lease_id == 77 and not ln.retriable
    # a fence refusal is an answer: the session is handed back, not retired
    call = CallState(1.0, True, True)
    assert failed_write(fr, call) == (False, fr)


# ================================================================================ writes


class Harness:
    """An :class:`AsyncClient` whose session writes, reads and KeepAlive streams are fakes, on a fake
    clock (``now``, advanced by hand and by each fake keep-alive's latency)."""

    def __init__(self, *, ttl_ms: int = 300, latency: float = 0.01) -> None:
        self.c = AsyncClient("127.0.0.1:1", timeout=2.0)
        self.now = 1000.0
        self.c._clock = lambda: self.now
        self.ttl_ms = ttl_ms
        self.latency = latency
        self.requests: list[tuple[str, Any]] = []
        self.sent: list[float] = []
        self.answered: list[float] = []
        """The send times of the keep-alives answered (in order)."""
        self.answer: Callable[[int], int] = lambda n: self.ttl_ms
        self.hang = False
        self.streams = 0

        async def take_session(call: CallState) -> SessionState:
            return SessionState(session_id=1, seq=len(self.requests))

        async def invoke(service: str, method: str, request: Any, **kw: Any) -> Any:
            self.requests.append((method, request))
            if method == "Grant":
                return lease_pb2.LeaseGrantResponse(id=42, ttl_ms=self.ttl_ms)
            if method == "Revoke":
                return lease_pb2.LeaseRevokeResponse(deleted=0)
            if method == "Put":
                return kv_pb2.PutResponse()
            raise AssertionError(method)

        harness = self

        class Call:
            def __init__(self) -> None:
                harness.streams += 1
                self.pending = 0

            async def write(self, req: Any) -> None:
                harness.sent.append(harness.now)
                self.last_sent = harness.now
                self.pending += 1

            async def read(self) -> Any:
                if harness.hang:
                    await asyncio.Event().wait()
                await asyncio.sleep(0)
                harness.now += harness.latency
                n = len(harness.sent)
                harness.answered.append(self.last_sent)
                return lease_pb2.LeaseKeepAliveResponse(id=42, ttl_ms=harness.answer(n))

            def cancel(self) -> None:
                pass

        class Stubs:
            class lease:  # noqa: N801
                @staticmethod
                def KeepAlive() -> Call:  # noqa: N802
                    return Call()

        self.c._take_session = take_session  # type: ignore[method-assign]
        self.c._invoke = invoke  # type: ignore[method-assign]
        self.c._get_stubs = cast(Any, lambda ep: Stubs())  # type: ignore[method-assign]
        self.c._router.needs_discovery = lambda: False  # type: ignore[method-assign]


@pytest.mark.asyncio
async def test_writes_carry_the_fence_and_the_lease_id() -> None:
    h = Harness()
    lease = await h.c.grant_lease(0.3)
    assert lease.id == 42
    await h.c.put("k", "v", lease=lease, fence=Fence(b"coterie/locks/x/", 17))
    method, req = h.requests[-1]
    assert method == "Put" and req.lease == 42
    assert (req.header.fence.prefix, req.header.fence.token) == (b"coterie/locks/x/", 17)
    await h.c.put("k", "v", lease=7)
    assert h.requests[-1][1].lease == 7 and not h.requests[-1][1].header.HasField("fence")
    with pytest.raises(TypeError):
        await h.c.put("k", "v", fence=object())  # type: ignore[arg-type]
    assert Op.put("k", "v", lease=lease).lease == 42


# ================================================================================ keep-alive


@pytest.mark.asyncio
async def test_grant_valid_until_counts_from_before_the_grant_was_sent() -> None:
    h = Harness(ttl_ms=5000)
    t0 = h.now
    lease = await h.c.grant_lease(5)
    assert lease.ttl == 5.0
    assert lease.valid_until == pytest.approx(t0 + 5.0 * (1 - DRIFT_BOUND))
    assert lease.alive
    h.now = lease.valid_until
    assert not lease.alive


@pytest.mark.asyncio
async def test_keepalive_loop_moves_valid_until_to_each_answered_send_time() -> None:
    h = Harness(ttl_ms=300, latency=0.02)
    lease = h.c.lease(0.3)
    async with lease:
        for _ in range(500):
            if len(h.answered) >= 3 and lease.keepalives == len(h.answered):
                break
            h.now += 0.01  # fake time passes while we wait (real sleeps pace the loop)
            await asyncio.sleep(0.01)
        assert len(h.answered) >= 3 and lease.keepalives == len(h.answered)
        # counted from the newest answered request's SEND time (read just before the write, so at
        # most one fake step of 0.01 earlier), never from its answer's arrival (0.02 later)
        base = lease.valid_until - 0.3 * (1 - DRIFT_BOUND)
        assert h.answered[-1] - 0.0101 <= base <= h.answered[-1] + 1e-9
        assert lease.alive and not lease.lost.is_set()
    assert h.requests[-1][0] == "Revoke" and h.requests[-1][1].id == 42


@pytest.mark.asyncio
async def test_ttl_zero_answer_cancels_the_body_and_raises_lease_lost() -> None:
    h = Harness(ttl_ms=300)
    h.answer = lambda n: 0  # the first keep-alive says the lease is gone
    called: list[object] = []
    reached_end = False
    with pytest.raises(LeaseLost) as ei:
        async with h.c.lease(0.3) as lease:
            lease.on_lost(called.append)
            for _ in range(500):
                h.now += 0.01
                await asyncio.sleep(0.01)
            reached_end = True
    assert not reached_end
    assert ei.value.lease_id == 42 and "does not exist" in str(ei.value)
    assert called == [lease] and lease.lost.is_set() and not lease.alive
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_unanswered_keepalives_lose_the_lease_at_valid_until() -> None:
    h = Harness(ttl_ms=200)
    h.hang = True
    body_cancelled = asyncio.Event()
    with pytest.raises(LeaseLost):
        async with h.c.lease(0.2) as lease:
            deadline = lease.valid_until
            try:
                while True:  # fake time runs at 1/5 of real time: the 0.25 s stream timeout hits first
                    h.now += 0.001
                    await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                body_cancelled.set()
                assert h.now >= deadline  # not a moment before valid_until
                raise
    assert body_cancelled.is_set() and lease.lost.is_set()
    assert lease.valid_until == deadline  # no unanswered keep-alive counted
    assert h.streams >= 2  # the silent stream was dropped and reopened


@pytest.mark.asyncio
async def test_a_foreign_cancellation_still_propagates() -> None:
    h = Harness(ttl_ms=5000)

    async def body() -> None:
        async with h.c.lease(5):
            await asyncio.Event().wait()

    t = asyncio.ensure_future(body())
    await asyncio.sleep(0.05)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert h.requests[-1][0] == "Revoke"


@pytest.mark.asyncio
async def test_loss_after_the_body_ended_is_still_reported() -> None:
    h = Harness(ttl_ms=5000)
    with pytest.raises(LeaseLost):
        async with h.c.lease(5) as lease:
            lease._mark_lost("test")  # lost just as the body ends, before the cancel is delivered
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # no stray cancellation left pending on this task


# ================================================================================ FencingGuard


def test_fencing_guard_refuses_older_tokens() -> None:
    g = FencingGuard()
    g.check(5)
    g.check(5)
    g.check(9)
    with pytest.raises(FenceRejected) as ei:
        g.check(8)
    assert (ei.value.token, ei.value.holder_token) == (8, 9) and not ei.value.retriable
    assert g.highest == 9
    with pytest.raises(TypeError):
        g.check("9")  # type: ignore[arg-type]


def test_fencing_guard_is_atomic_across_threads() -> None:
    g = FencingGuard()
    accepted: list[int] = []
    rng = random.Random(7)
    tokens = [[rng.randrange(1, 10_000) for _ in range(500)] for _ in range(8)]

    def run(ts: list[int]) -> None:
        for t in ts:
            with g.lock:
                try:
                    g.check(t)
                except FenceRejected:
                    continue
                accepted.append(t)

    threads = [threading.Thread(target=run, args=(ts,)) for ts in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accepted == sorted(accepted)  # every accepted token >= every earlier one
    assert g.highest == accepted[-1] == max(accepted)


def test_a_finished_keepalive_stream_is_reopened_not_fatal() -> None:
    """grpc raises ``asyncio.InvalidStateError`` (not an AioRpcError) when writing to a stream that
    already finished, e.g. its member was killed between two keep-alives; the keep-alive loop must
    treat it as an ended stream (reopen on another member), not die with the task. Seen in the
    Jepsen-style lock workload under kills on 5 nodes."""
    from coterie.client.leases import _exchange, _StreamEnded

    class Finished:
        async def write(self, req: Any) -> None:
            raise asyncio.InvalidStateError("RPC already finished.")

        async def read(self) -> Any:
            raise AssertionError("not reached")

    with pytest.raises(_StreamEnded):
        asyncio.run(_exchange(Finished(), 7))
