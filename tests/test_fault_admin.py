"""The fault-injection admin API (``coterie.v1.FaultInjection``) on real ``coterie node`` processes:
refused on a node started without ``--enable-fault-injection``; on one started with it, faults are
set, read back and validated; an isolated leader loses leadership and the cluster heals."""

from __future__ import annotations

import time
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.v1 import cluster_pb2, faults_pb2, faults_pb2_grpc
from coterie.verify.backends.base import Backend, NodeOptions
from coterie.verify.backends.local import LocalBackend
from coterie.verify.nemesis.partition import isolate


def _stub(b: Backend, name: str) -> faults_pb2_grpc.FaultInjectionStub:
    return faults_pb2_grpc.FaultInjectionStub(b._channel(name))


def _until(cond: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(cond) and cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_refused_without_the_flag(tmp_path: Path) -> None:
    with LocalBackend(1, tmp_path, NodeOptions(fault_injection=False)) as b:
        b.start_all()
        b.wait_for_leader(60)
        with pytest.raises(grpc.RpcError) as ei:
            _stub(b, "n1").GetFaults(faults_pb2.GetFaultsRequest(), timeout=5)
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--enable-fault-injection" in ei.value.details()
        with pytest.raises(RuntimeError, match="enable-fault-injection"):
            b.heal_network()


def test_set_get_validate_and_isolate_the_leader(tmp_path: Path) -> None:
    with LocalBackend(3, tmp_path) as b:
        b.start_all()
        b.wait_for_ready(60)
        lead = b.wait_for_leader(60)
        s = _stub(b, "n1")
        want = faults_pb2.FaultState(blocked_in=[2], drop_rate=0.25, delay_seconds=0.01)
        got = s.SetFaults(want, timeout=5)
        assert list(got.blocked_in) == [2] and got.drop_rate == 0.25 and got.delay_seconds == 0.01
        assert s.GetFaults(faults_pb2.GetFaultsRequest(), timeout=5) == got
        for bad in (faults_pb2.FaultState(drop_rate=1.5), faults_pb2.FaultState(delay_seconds=-1),
                    faults_pb2.FaultState(blocked=[1])):
            with pytest.raises(grpc.RpcError) as ei:
                s.SetFaults(bad, timeout=5)
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert s.GetFaults(faults_pb2.GetFaultsRequest(), timeout=5) == got  # unchanged
        assert s.SetFaults(faults_pb2.FaultState(), timeout=5) == faults_pb2.FaultState()

        b.partition(isolate(b.names(), lead))
        others = [n for n in b.names() if n != lead]

        def new_leader() -> bool:
            sts = [b.status(n) for n in others]
            return any(st is not None and st.role == cluster_pb2.ROLE_LEADER for st in sts)

        _until(new_leader, 60, "a new leader on the majority side")
        b.heal_network()
        _until(lambda: b.leader() is not None, 60, "a leader after healing")
