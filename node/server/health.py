"""The standard gRPC health service (``grpc.health.v1.Health``, package grpcio-health-checking) on the
client port, kept up to date by :class:`HealthMonitor`.

A node is SERVING when

- it knows a leader (``Driver.leader`` is not 0: a follower that lost its leader forgets it at its
  next election timeout, when it becomes a pre-candidate, and a leader that lost its quorum steps
  down after an election timeout: check-quorum), and, if it leads itself, it has applied an entry of
  its own term (``Driver.leader_ready``: before that it cannot answer a linearizable read); and
- it has applied every entry it knew to be committed at the previous evaluation, one ``interval``
  earlier (``applied >= commit index then``). Comparing with the commit index of that very moment
  instead would flap under load: the driver applies a batch only after its fsync, so the commit
  index runs ahead of the applied one for a few milliseconds all the time. A member that is
  catching up (a restart replaying the leader's backlog, a snapshot being installed) stays
  NOT_SERVING until it keeps up; and
- it is not removed from the cluster nor shutting down (then NOT_SERVING for good).

Otherwise NOT_SERVING. The status is evaluated every ``interval`` seconds (the node passes its tick
length) and set for the service names of :data:`SERVICES` (``""``, the whole server, is what
``grpc_health_probe`` and ``coterie endpoint health`` ask about). ``Watch`` callers see every change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from .driver import Driver

__all__ = ["SERVICES", "HealthMonitor"]

SERVICES = ("", "coterie.v1.KV")
"""The service names whose status the monitor sets (they all share one status)."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMonitor:
    """Owns the health servicer of one node and re-evaluates its status every ``interval`` s."""

    def __init__(self, driver: Driver, *, interval: float,
                 removed: Callable[[], bool] = lambda: False) -> None:
        self.driver = driver
        self.interval = interval
        self.removed = removed
        self.servicer = health.aio.HealthServicer()
        self.serving = False
        """The status last set: True for SERVING."""
        self._commit_mark: int | None = None
        self._task: asyncio.Task[None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def evaluate(self) -> bool:
        """The condition of the module docstring, now; advances the commit mark."""
        d = self.driver
        commit = d.raw.raft.log.committed
        caught_up = self._commit_mark is not None and d.sm.applied_index >= self._commit_mark
        self._commit_mark = commit
        has_leader = d.leader != 0 and (d.leader != d.raw.id or d.leader_ready())
        return caught_up and has_leader and not self.removed()

    async def _set_all(self, serving: bool) -> None:
        for name in SERVICES:
            await self.servicer.set(name, _SERVING if serving else _NOT_SERVING)
        self.serving = serving

    async def start(self) -> None:
        """Set NOT_SERVING (the servicer starts out SERVING) and start the evaluations."""
        await self._set_all(False)
        self._task = asyncio.create_task(self._run(), name="health")

    async def _run(self) -> None:
        while True:
            serving = self.evaluate()
            if serving != self.serving:
                await self._set_all(serving)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """NOT_SERVING for good (``enter_graceful_shutdown``) and stop evaluating."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.serving = False
        await self.servicer.enter_graceful_shutdown()
