"""A lock holder cut off from the majority together with its node (the partition twin of the SIGSTOP
test in ``test_client_locks``): another client takes the lock on the majority side, and after the
partition heals every fenced write of the old holder is rejected.

The holder reaches the members only through TCP proxies (``discover=False`` keeps it on them), so the
test can cut the holder's own links as well as its node's: during the partition it reaches only its
node, which is cut from the two others by the nodes' fault-injection service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import Client, FenceRejected
from coterie.v1 import faults_pb2, faults_pb2_grpc
from tests.proc_cluster import NAMES, ProcCluster, cluster, poll

TTL = 3.0
MARGIN = 10.0


class Proxy:
    """A TCP forwarder to ``target`` on a free loopback port; ``cut()`` closes every connection and
    refuses new ones until ``heal()``."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                conn.close()
                continue
            try:
                up = socket.create_connection(self.target, timeout=2)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._conns += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def heal(self) -> None:
        self.open = True

    def close(self) -> None:
        self._stop = True
        self.cut()
        self.listener.close()


def _set_faults(pc: ProcCluster, name: str, blocked: list[int]) -> None:
    with grpc.insecure_channel(pc.client[name]) as ch:
        faults_pb2_grpc.FaultInjectionStub(ch).SetFaults(faults_pb2.FaultState(blocked=blocked), timeout=5)


@pytest.fixture
def pc(tmp_path: Path) -> Iterator[ProcCluster]:
    with cluster(tmp_path, extra={"*": ["--enable-fault-injection"]}) as c:
        yield c


def test_partitioned_holder_is_fenced_off_after_another_takes_the_lock(pc: ProcCluster) -> None:
    name = "test/partitioned"
    proxies = {n: Proxy(pc.client[n]) for n in NAMES}
    try:
        home = pc.leader()  # the holder's node: partitioned away while it leads
        majority = [n for n in NAMES if n != home]
        with Client([proxies[n].addr for n in NAMES], discover=False, timeout=5.0) as holder, \
                Client(pc.endpoints(majority), timeout=5.0) as other:
            lock = holder.lock(name, ttl=TTL).acquire()
            token = lock.token
            holder.put("locks/partitioned", "old-before", fence=lock)

            # The partition: the holder's node loses the two others, and the holder loses its
            # links to them (it can still reach its own node).
            for n in majority:
                proxies[n].cut()
                _set_faults(pc, n, [pc.ids[home]])
            _set_faults(pc, home, [pc.ids[n] for n in majority])

            t0 = time.monotonic()
            with other.lock(name, ttl=TTL, timeout=TTL + MARGIN) as lk:
                assert lk.token > token
                other.put("locks/partitioned", "new", fence=lk)
                waited = time.monotonic() - t0
                assert waited < TTL + MARGIN
                # The holder has been told: its lease ran out without an answered keep-alive.
                poll("the holder to see its lock lost", lambda: True if not lock.alive else None, MARGIN)

                # Heal; the old holder's writes now reach the leader, which refuses them.
                for n in NAMES:
                    _set_faults(pc, n, [])
                for p in proxies.values():
                    p.heal()
                for i in range(3):
                    with pytest.raises(FenceRejected) as ei:
                        holder.put("locks/partitioned", f"old-after-{i}", fence=lock)
                    assert (ei.value.token, ei.value.holder_token) == (token, lk.token)
                kv = other.get("locks/partitioned")
                assert kv is not None and kv.value == b"new"
    finally:
        for p in proxies.values():
            p.close()
