"""etcd's ``concurrency.Mutex`` (Go client v3.4, ``clientv3/concurrency/mutex.go``) with its ``Session``,
on ``aetcd`` primitives, for the lock benchmark.

``aetcd`` 1.0.0 has a lock (``Client.lock``), but it is not etcd's Mutex: one key per name, every
waiter retries a compare-and-put after any delete (a thundering herd, no FIFO order) and no
keep-alive. So this module does what the Go client does, on the same channel ``aetcd`` uses (its
generated KV stub for the requests ``aetcd`` cannot express: sorted, limited ranges):

- session: grant a lease of ``ttl`` seconds; keep it alive in the background every ``ttl / 3``;
- lock: one Txn ``if create_revision(key) == 0 then put(key, "", lease), get(prefix, first created)
  else get(key), get(prefix, first created)`` with ``key = <prefix><lease id in hex>``; held if the
  first created key under the prefix is this one; else wait: get the last-created key under the
  prefix with ``create_revision <= mine - 1``, watch it from the read's revision until it is deleted,
  and again until there is none (``waitDeletes``);
- unlock: delete the key; close the session: stop the keep-alive, revoke the lease.

A contender therefore runs grant, Txn, delete and revoke uncontended (4 RPCs), plus one range and one
watch per predecessor deletion it waits for. The prefix is ``coterie/locks/<name>/``, as coterie's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

LOCK_PREFIX = b"coterie/locks/"


class EtcdMutex:
    """One contender of the lock ``name`` with its own session (lease), as ``concurrency.NewSession``
    + ``concurrency.NewMutex`` + ``Lock`` / ``Unlock`` + ``Session.Close``."""

    def __init__(self, client: Any, name: str, *, ttl: int = 10) -> None:
        self._c = client
        self.prefix = LOCK_PREFIX + name.encode() + b"/"
        self.ttl = ttl
        self.key = b""
        self.revision = 0
        self.lease_id = 0
        self._keepalive: asyncio.Task[None] | None = None

    async def lock(self, timeout: float | None = None) -> None:
        """Acquire (at most ``timeout`` seconds: :class:`TimeoutError`; the session is closed then)."""
        try:
            await asyncio.wait_for(self._lock(), timeout)
        except BaseException:
            await asyncio.shield(self.close())
            raise

    async def _lock(self) -> None:
        from aetcd import rpc

        lease = await self._c.lease(self.ttl)
        self.lease_id = int(lease.id)
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        self.key = self.prefix + f"{self.lease_id:x}".encode()
        owner = rpc.RequestOp(request_range=self._first_created())
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=self.key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                                 create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=self.key, value=b"", lease=self.lease_id)),
                     owner],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=self.key)), owner])
        resp = await self._c.kvstub.Txn(txn, timeout=self._c._timeout, metadata=self._c.metadata)
        self.revision = int(resp.header.revision)
        if not resp.succeeded:
            self.revision = int(resp.responses[0].response_range.kvs[0].create_revision)
        first = resp.responses[1].response_range.kvs
        if not first or int(first[0].create_revision) == self.revision:
            return
        await self._wait_deletes(self.revision - 1)

    def _first_created(self) -> Any:
        from aetcd import rpc
        from aetcd.utils import prefix_range_end

        return rpc.RangeRequest(key=self.prefix, range_end=prefix_range_end(self.prefix), limit=1,
                                sort_order=rpc.RangeRequest.ASCEND, sort_target=rpc.RangeRequest.CREATE)

    async def _wait_deletes(self, max_create_revision: int) -> None:
        from aetcd import rpc, rtypes
        from aetcd.utils import prefix_range_end

        last = rpc.RangeRequest(key=self.prefix, range_end=prefix_range_end(self.prefix), limit=1,
                                sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.CREATE,
                                max_create_revision=max_create_revision)
        while True:
            r = await self._c.kvstub.Range(last, timeout=self._c._timeout, metadata=self._c.metadata)
            if not r.kvs:
                return
            await self._c.watch_once(bytes(r.kvs[0].key), start_revision=int(r.header.revision),
                                     kind=rtypes.EventKind.DELETE)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            with contextlib.suppress(Exception):
                await self._c.refresh_lease(self.lease_id)

    async def unlock(self) -> None:
        """Delete the key, then close the session (stop the keep-alive, revoke the lease)."""
        if self.key:
            await self._c.delete(self.key)
        await self.close()

    async def close(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lease_id, self.lease_id = self.lease_id, 0
        if lease_id:
            await self._c.revoke_lease(lease_id)
