"""``coterie.v1.FaultInjection``: set the peer-link faults of a running node (tests only).

The service is always registered on the client port, so a caller gets a clear refusal rather than
UNIMPLEMENTED: a node started without ``--enable-fault-injection`` (``faults is None``) answers every
call with FAILED_PRECONDITION and changes nothing. On a node with the flag, ``SetFaults`` replaces the
whole :class:`Faults` state in place (the transport and the peer servicer hold the same object, so
the next batch sees it); an empty request heals everything, the lease clock included (rate 1, no
shift). Invalid values (a drop rate outside [0, 1], a negative or huge delay, this node's own id, a
clock rate or jump out of range) are refused with INVALID_ARGUMENT and leave the state unchanged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import faults_pb2, faults_pb2_grpc

from .clock import NodeClock
from .peer import Faults

__all__ = ["MAX_DELAY", "FaultInjectionService", "add_fault_admin"]

log = logging.getLogger("coterie.faults")

MAX_DELAY = 60.0
"""Largest accepted per-batch delay, seconds."""


def _state(f: Faults, clock: NodeClock | None) -> faults_pb2.FaultState:
    return faults_pb2.FaultState(blocked=sorted(f.blocked), blocked_in=sorted(f.blocked_in),
                                 drop_rate=f.drop_rate, delay_seconds=f.delay,
                                 clock_rate=clock.rate if clock and clock.rate != 1.0 else 0.0,
                                 clock_offset_seconds=clock.offset if clock else 0.0)


class FaultInjectionService(faults_pb2_grpc.FaultInjectionServicer):
    def __init__(self, faults: Faults | None, member_id: int, clock: NodeClock | None = None) -> None:
        self.faults = faults
        self.member_id = member_id
        self.clock = clock
        """The node's lease clock; None: clock faults are refused (INVALID_ARGUMENT)."""

    async def _enabled(self, context: Any) -> Faults:
        if self.faults is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"fault injection is disabled on member {self.member_id}: "
                "it was started without --enable-fault-injection")
            raise AssertionError("unreachable: context.abort raises")
        return self.faults

    async def SetFaults(  # noqa: N802
        self, request: faults_pb2.FaultState, context: Any
    ) -> faults_pb2.FaultState:
        f = await self._enabled(context)
        problem = ""
        if not (0.0 <= request.drop_rate <= 1.0):
            problem = f"drop_rate must be in [0, 1], got {request.drop_rate}"
        elif not (math.isfinite(request.delay_seconds) and 0.0 <= request.delay_seconds <= MAX_DELAY):
            problem = f"delay_seconds must be in [0, {MAX_DELAY:g}], got {request.delay_seconds}"
        elif self.member_id in request.blocked or self.member_id in request.blocked_in:
            problem = f"member {self.member_id} cannot block itself"
        rate = request.clock_rate or 1.0
        offset = request.clock_offset_seconds
        if not problem and self.clock is None and (rate != 1.0 or offset != 0.0):
            problem = f"member {self.member_id} has no skewable clock"
        if not problem and self.clock is not None:
            try:
                self.clock.set(rate, offset)
            except ValueError as exc:
                problem = str(exc)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        f.blocked = set(request.blocked)
        f.blocked_in = set(request.blocked_in)
        f.drop_rate = request.drop_rate
        f.delay = request.delay_seconds
        log.warning("peer faults set", extra={"blocked": sorted(f.blocked),
                                              "blocked_in": sorted(f.blocked_in),
                                              "drop_rate": f.drop_rate, "delay": f.delay,
                                              "clock_rate": rate, "clock_offset": offset})
        return _state(f, self.clock)

    async def GetFaults(  # noqa: N802
        self, request: faults_pb2.GetFaultsRequest, context: Any
    ) -> faults_pb2.FaultState:
        return _state(await self._enabled(context), self.clock)


def add_fault_admin(server: grpc.aio.Server, faults: Faults | None, member_id: int,
                    clock: NodeClock | None = None) -> None:
    """Register the service on ``server``; ``faults`` None makes it refuse every call; ``clock`` is the
    node's lease clock that ``clock_rate`` / ``clock_offset_seconds`` skew."""
    faults_pb2_grpc.add_FaultInjectionServicer_to_server(FaultInjectionService(faults, member_id, clock),
                                                         server)
