"""Leases held by an :class:`~coterie.client.AsyncClient`: :class:`AsyncLease`, its background
keep-alive over the ``Lease.KeepAlive`` stream, its loss detection, and the ``async with`` body
guard that cancels the body the moment the lease can no longer be trusted.

A lease is trusted until :attr:`AsyncLease.valid_until`: the time (on the client's monotonic clock)
the newest *answered* grant or keep-alive was SENT, plus the TTL the answer granted times
``1 - DRIFT_BOUND`` (:class:`~coterie.client._lease.LeaseValidity`). It is LOST when that passes
without a newer answered keep-alive, or when the cluster answers a keep-alive with TTL 0 (expired or
revoked); a lost lease stays lost. Revoking it (or leaving its ``async with``) releases it, which is
not a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import lease_pb2

from ._call import backoff
from ._errors import map_rpc_error
from ._lease import KEEPALIVE_FRACTION, LeaseValidity, ttl_ms
from .errors import CoterieError, LeaseLost, LeaseNotFound, Unavailable

if TYPE_CHECKING:
    from .aio import AsyncClient

__all__ = ["AsyncLease"]

log = logging.getLogger("coterie.client")

RELEASE_BUDGET = 5.0
"""At most this many seconds (and at most the client's timeout) are spent releasing a lease, lock or
leadership on exit; a lease not revoked expires by itself."""

LostCallback = Callable[[Any], None]


class AsyncLease:
    """A lease of an :class:`AsyncClient`: ``id``, ``ttl`` (granted seconds), ``valid_until``
    (monotonic deadline up to which it can be trusted), ``alive``, ``lost`` (an :class:`asyncio.Event`
    set when it is lost; ``await lease.wait_lost()``) and :meth:`on_lost` callbacks.

    Made by :meth:`AsyncClient.grant_lease` (granted, not kept alive: ``valid_until`` is the grant's),
    :meth:`AsyncClient.lease` (granted and kept alive by ``async with``) and
    :meth:`AsyncClient.keep_alive` (an existing lease kept alive). ``async with lease:`` keeps it alive
    in the background (every ``ttl / 3``; a failed stream is reopened on the leader), runs the body so
    that it is cancelled the moment the lease is lost (then the ``async with`` raises
    :class:`LeaseLost`), and revokes it on exit.
    """

    def __init__(self, client: AsyncClient, *, ttl: float | None = None, lease_id: int = 0) -> None:
        self._client = client
        self.id = lease_id
        self._requested_ttl = ttl
        self._validity = LeaseValidity()
        self.lost = asyncio.Event()
        """Set once the lease is lost (never for a lease released on purpose)."""
        self.lost_reason = ""
        self.notice = ""
        """The server's notice when the granted TTL differs from the requested one."""
        self.keepalives = 0
        """Answered keep-alives so far."""
        self._hooks: list[LostCallback] = []
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._released = False
        self._guards: list[_BodyGuard] = []

    def __repr__(self) -> str:
        return f"<AsyncLease id={self.id} ttl={self.ttl} alive={self.alive}>"

    # ------------------------------------------------------------------------------------ state

    @property
    def ttl(self) -> float:
        """The granted TTL, seconds (0 before the grant)."""
        return self._validity.ttl

    @property
    def valid_until(self) -> float:
        """The monotonic time (``time.monotonic``, the client's clock) until which the lease can be
        trusted: the send time of the newest answered grant or keep-alive + the granted TTL x
        ``(1 - DRIFT_BOUND)``."""
        return self._validity.valid_until

    @property
    def alive(self) -> bool:
        """Granted, not released, not lost, and ``valid_until`` not passed (no side effect: the
        watchdog on the client's loop marks the lease lost, so this may be read from any thread)."""
        return not (self._released or self.id == 0 or self._validity.lost) and \
            self._client._clock() < self._validity.valid_until

    @property
    def released(self) -> bool:
        return self._released

    def on_lost(self, callback: LostCallback) -> None:
        """Call ``callback(lease)`` once when the lease is lost (at once if it already is); on the
        client's event loop, so it must not block. Exceptions it raises are logged and ignored."""
        if self.lost.is_set():
            _call_hook(callback, self)
        else:
            self._hooks.append(callback)

    async def wait_lost(self) -> None:
        """Return once the lease is lost."""
        await self.lost.wait()

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is alive."""
        if not self.alive:
            raise self._lost_error()

    def _lost_error(self) -> LeaseLost:
        why = self.lost_reason or ("it was released" if self._released else "it is not valid")
        return LeaseLost(f"lease {self.id} lost: {why}", lease_id=self.id)

    def _mark_lost(self, reason: str) -> None:
        if self._released or self.lost.is_set():
            return
        self._validity.lost = True
        self.lost_reason = reason
        self._cancel_watchdog()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self.lost.set()
        hooks, self._hooks = self._hooks, []
        for g in list(self._guards):
            g.fire()
        for h in hooks:
            _call_hook(h, self)

    def _answered(self, sent: float, granted_ms: int) -> None:
        if self._validity.answered(sent, granted_ms, self._client._clock()):
            self._arm()
        elif granted_ms <= 0:
            self._mark_lost("the cluster says it does not exist (expired or revoked)")
        else:
            self._mark_lost("its valid_until passed before a keep-alive was answered")

    def _arm(self) -> None:
        self._cancel_watchdog()
        if self._released or self._validity.lost:
            return
        delay = max(0.0, self._validity.valid_until - self._client._clock())
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._watchdog = None
        if self._validity.check(self._client._clock()):
            self._mark_lost("its valid_until passed without a newer answered keep-alive")
        else:
            self._arm()

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # ------------------------------------------------------------------------------------ calls

    async def _grant(self, timeout: float | None = None) -> None:
        assert self._requested_ttl is not None
        req = lease_pb2.LeaseGrantRequest(ttl_ms=ttl_ms(self._requested_ttl))
        sent = self._client._clock()  # before the first attempt: earlier than the answered one's
        resp = await self._client._write("lease", "Grant", req, timeout)
        self.id = int(resp.id)
        self.notice = str(resp.notice)
        self._answered(sent, int(resp.ttl_ms))

    async def keep_alive_once(self) -> float:
        """Send one keep-alive and wait for its answer (within the client's timeout, retrying on
        other members); returns the new ``valid_until``. Raises :class:`LeaseNotFound` if the cluster
        says the lease is gone (then it is lost) and :class:`LeaseLost` if it was lost before."""
        if self._validity.lost:
            raise self._lost_error()
        cl = self._client
        st = cl._call(cl.timeout, False, True)
        avoid = ""
        while True:
            exhausted = st.exhausted()
            if exhausted is not None:
                raise exhausted
            if cl._router.needs_discovery():
                await cl._discover(st)
            ep = cl._router.pick_avoiding(avoid)
            st.attempts += 1
            call = cl._get_stubs(ep).lease.KeepAlive()
            try:
                sent = cl._clock()
                resp = await asyncio.wait_for(_exchange(call, self.id), st.attempt_timeout())
            except (TimeoutError, grpc.aio.AioRpcError, _StreamEnded) as exc:
                err = _stream_error(exc, ep)
                if not err.retriable:
                    raise err from None
                st.failed(err)
                cl._router.failure(ep, err)
                avoid = ep
                await asyncio.sleep(st.next_backoff())
                continue
            finally:
                call.cancel()
            cl._router.success(ep)
            self.keepalives += 1
            self._answered(sent, int(resp.ttl_ms))
            if int(resp.ttl_ms) <= 0:
                raise LeaseNotFound(f"lease {self.id} not found (expired or revoked)", lease_id=self.id,
                                    endpoint=ep)
            if self._validity.lost:
                raise self._lost_error()
            return self.valid_until

    def start_keepalive(self) -> None:
        """Keep the lease alive in the background until it is lost, revoked, or
        :meth:`stop_keepalive`; idempotent. Needs a running loop."""
        if self._task is None and not self._released and not self._validity.lost:
            self._task = asyncio.get_running_loop().create_task(self._keepalive_loop(),
                                                                 name=f"coterie-keepalive-{self.id}")
            if self._watchdog is None:
                self._arm()

    async def stop_keepalive(self) -> None:
        """Stop the background keep-alive (the lease then lives until its TTL runs out)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keepalive_loop(self) -> None:
        """Renew every ``ttl * KEEPALIVE_FRACTION`` over one stream to the leader, one request in flight;
        a failed or silent stream is dropped and reopened (on another member, then the leader a
        refusal names) at once, with a short jittered pause after repeated failures."""
        cl = self._client
        call: Any = None
        ep = avoid = ""
        failures = 0
        try:
            while not (self._released or self._validity.lost):
                wait = self._validity.next_keepalive() - cl._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                if call is None:
                    if cl._router.needs_discovery():
                        await cl._discover(cl._call(max(0.5, self.ttl * KEEPALIVE_FRACTION), False, True))
                    ep = cl._router.pick_avoiding(avoid)
                    call = cl._get_stubs(ep).lease.KeepAlive()
                sent = cl._clock()
                try:
                    resp = await asyncio.wait_for(_exchange(call, self.id),
                                                  max(0.25, self.ttl * KEEPALIVE_FRACTION))
                except (TimeoutError, grpc.aio.AioRpcError, _StreamEnded) as exc:
                    err = _stream_error(exc, ep)
                    call.cancel()
                    call = None
                    if not err.retriable:
                        self._mark_lost(f"its keep-alive failed: {err}")
                        return
                    cl._router.failure(ep, err)
                    avoid = ep
                    failures += 1
                    if failures > 1:
                        await asyncio.sleep(min(backoff(failures, cl._rng),
                                                max(0.01, self.ttl * KEEPALIVE_FRACTION / 4)))
                    continue
                failures = 0
                cl._router.success(ep)
                self.keepalives += 1
                self._answered(sent, int(resp.ttl_ms))
        except CoterieError as exc:  # the client was closed under the loop
            self._mark_lost(f"its keep-alive stopped: {exc}")
        finally:
            if call is not None:
                call.cancel()

    async def revoke(self, *, timeout: float | None = None) -> int:
        """Revoke the lease (deleting its keys, in one revision); stops the keep-alive. Returns how
        many keys were deleted; :class:`LeaseNotFound` if it no longer exists. Not a loss: the
        ``lost`` event and callbacks are not triggered."""
        self._released = True
        self._cancel_watchdog()
        await self.stop_keepalive()
        req = lease_pb2.LeaseRevokeRequest(id=self.id)
        resp = await self._client._write("lease", "Revoke", req, timeout)
        return int(resp.deleted)

    async def _release(self) -> None:
        """Revoke on exit, best effort within :data:`RELEASE_BUDGET` (a lease already gone, or not
        reached, expires by itself)."""
        self._released = True
        self._cancel_watchdog()
        budget = min(self._client.timeout, RELEASE_BUDGET)
        with contextlib.suppress(CoterieError):
            await self.revoke(timeout=budget)

    # ------------------------------------------------------------------------------------ async with

    async def _open(self) -> None:
        """Grant (unless granted already), start the keep-alive, arm the loss watchdog."""
        if self.id == 0:
            await self._grant()
        if self._validity.lost:
            raise self._lost_error()
        self.start_keepalive()

    async def __aenter__(self) -> AsyncLease:
        await self._open()
        self._guards.append(_BodyGuard(self, f"lease {self.id}"))
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> bool:
        guard = self._guards.pop()
        lost = await guard.exit(et)
        await _shielded(self._release())
        if lost is not None:
            raise lost from ev
        return False


class _StreamEnded(Exception):
    pass


async def _exchange(call: Any, lease_id: int) -> Any:
    """One keep-alive on an open stream: write the request, read its answer."""
    try:
        await call.write(lease_pb2.LeaseKeepAliveRequest(id=lease_id))
        resp = await call.read()
    except asyncio.InvalidStateError:
        # The stream already finished (e.g. its member was killed between two keep-alives): grpc
        # raises this instead of an AioRpcError. Reopen it like any ended stream, instead of letting
        # the keep-alive task die (the lease would then be lost at valid_until for no reason).
        raise _StreamEnded from None
    if resp is grpc.aio.EOF:
        raise _StreamEnded
    return resp


def _stream_error(exc: BaseException, ep: str) -> CoterieError:
    if isinstance(exc, grpc.aio.AioRpcError):
        return map_rpc_error(exc, endpoint=ep, write=False, idempotent=True)
    if isinstance(exc, _StreamEnded):
        return Unavailable("the keep-alive stream ended", endpoint=ep)
    return Unavailable("no answer to a keep-alive in time", code="DEADLINE_EXCEEDED", endpoint=ep)


def _call_hook(h: LostCallback, arg: object) -> None:
    try:
        h(arg)
    except Exception:
        log.exception("a lease's on_lost callback failed")


async def _shielded(coro: Any) -> None:
    """Run ``coro`` to its end even if the awaiting task is cancelled meanwhile (it then goes on in
    the background and the cancellation propagates)."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    await asyncio.shield(task)


_BACKGROUND: set[asyncio.Future[Any]] = set()


class _BodyGuard:
    """Cancels the task that entered an ``async with`` when the lease it guards is lost, and on exit
    turns that cancellation into :class:`LeaseLost` (as ``asyncio.timeout`` turns its own into
    ``TimeoutError``): a cancellation from elsewhere still propagates."""

    def __init__(self, lease: AsyncLease, what: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._lease = lease
        self._what = what
        self._cancelling = task.cancelling()
        self._fired = False
        self._active = True
        if lease.lost.is_set():
            self.fire()

    def fire(self) -> None:
        if self._active and not self._fired and not self._task.done():
            self._fired = True
            self._task.cancel(msg=f"{self._what} lost")

    async def exit(self, et: type[BaseException] | None) -> LeaseLost | None:
        """Stop guarding; the :class:`LeaseLost` to raise instead of the body's outcome, if any."""
        self._active = False
        if not self._fired:
            if et is None and self._lease.lost.is_set():
                return LeaseLost(f"{self._what} lost during the body: {self._lease.lost_reason}",
                                 lease_id=self._lease.id)
            return None
        if et is not asyncio.CancelledError:
            # The body ended before the cancellation reached it: take it here instead.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
        if self._task.uncancel() > self._cancelling:
            return None  # cancelled from elsewhere too: that cancellation propagates
        if et is None or et is asyncio.CancelledError:
            return LeaseLost(f"{self._what} lost: {self._lease.lost_reason}", lease_id=self._lease.id)
        return None
