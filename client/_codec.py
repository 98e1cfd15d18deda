"""Protobuf messages to and from the client's types (:mod:`coterie.client.types`): the requests the
clients build (ranges, transactions) and the results they return (key-values, put / delete / txn
results, member and cluster status). Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coterie.v1 import cluster_pb2, kv_pb2

from .types import (
    ClusterStatus,
    Compare,
    DeleteResult,
    KeyValue,
    MemberStatus,
    Op,
    OpResult,
    PutResult,
    RangeResult,
    TxnResult,
)

_ROLES = {cluster_pb2.ROLE_LEADER: "leader", cluster_pb2.ROLE_FOLLOWER: "follower",
          cluster_pb2.ROLE_CANDIDATE: "candidate", cluster_pb2.ROLE_PRE_CANDIDATE: "pre-candidate"}
_TARGETS = {"version": kv_pb2.Compare.VERSION, "create": kv_pb2.Compare.CREATE,
            "mod": kv_pb2.Compare.MOD, "value": kv_pb2.Compare.VALUE, "lease": kv_pb2.Compare.LEASE}
_TARGET_FIELDS = {"version": "version", "create": "create_revision", "mod": "mod_revision",
                  "value": "value", "lease": "lease"}
_RESULTS = {"==": kv_pb2.Compare.EQUAL, "!=": kv_pb2.Compare.NOT_EQUAL,
            "<": kv_pb2.Compare.LESS, ">": kv_pb2.Compare.GREATER}


def range_request(key: bytes, range_end: bytes = b"", *, limit: int = 0, revision: int = 0,
                  serializable: bool = False, keys_only: bool = False) -> Any:
    return kv_pb2.RangeRequest(key=key, range_end=range_end, limit=limit, revision=revision,
                               serializable=serializable, keys_only=keys_only)


def compare_to_pb(c: Compare) -> Any:
    pb = kv_pb2.Compare(result=_RESULTS[c.result], target=_TARGETS[c.target], key=c.key,
                        range_end=c.range_end)
    setattr(pb, _TARGET_FIELDS[c.target], c.operand)
    return pb


def op_to_pb(op: Op) -> Any:
    if op.kind == "get":
        return kv_pb2.RequestOp(request_range=range_request(
            op.key, op.range_end, limit=op.limit, revision=op.revision, keys_only=op.keys_only))
    if op.kind == "put":
        return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(
            key=op.key, value=op.value, lease=op.lease, prev_kv=op.prev_kv))
    return kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(
        key=op.key, range_end=op.range_end, prev_kv=op.prev_kv))


def txn_request(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Any:
    for c in compare:
        if not isinstance(c, Compare):
            raise TypeError(f"compare entries must be Compare (e.g. Compare.value(k) == v), not {c!r}")
    return kv_pb2.TxnRequest(compare=[compare_to_pb(c) for c in compare],
                             success=[op_to_pb(o) for o in success],
                             failure=[op_to_pb(o) for o in failure])


def txn_writes(success: Sequence[Op], failure: Sequence[Op]) -> bool:
    return any(o.kind != "get" for o in (*success, *failure))


def kv_from_pb(pb: Any) -> KeyValue:
    return KeyValue(bytes(pb.key), bytes(pb.value), pb.create_revision, pb.mod_revision, pb.version,
                    pb.lease)


def range_from_pb(pb: Any) -> RangeResult:
    return RangeResult(tuple(kv_from_pb(k) for k in pb.kvs), pb.more, pb.count, pb.header.revision)


def put_from_pb(pb: Any) -> PutResult:
    prev = kv_from_pb(pb.prev_kv) if pb.HasField("prev_kv") and pb.prev_kv.key else None
    return PutResult(pb.header.revision, prev)


def delete_from_pb(pb: Any) -> DeleteResult:
    return DeleteResult(pb.deleted, tuple(kv_from_pb(k) for k in pb.prev_kvs), pb.header.revision)


def txn_from_pb(pb: Any) -> TxnResult:
    out: list[OpResult] = []
    for r in pb.responses:
        which = r.WhichOneof("response")
        if which == "response_range":
            out.append(range_from_pb(r.response_range))
        elif which == "response_put":
            out.append(put_from_pb(r.response_put))
        else:
            out.append(delete_from_pb(r.response_delete_range))
    return TxnResult(pb.succeeded, tuple(out), pb.header.revision)


def member_status(endpoint: str, pb: Any = None, error: str | None = None) -> MemberStatus:
    if pb is None:
        return MemberStatus(endpoint, error=error or "no answer")
    known = tuple((int(m.id), str(m.client_addr)) for m in pb.members)
    return MemberStatus(endpoint, pb.member_id, pb.name, _ROLES.get(pb.role, str(pb.role)), pb.term,
                        pb.leader_id, pb.commit_index, pb.applied_index, pb.header.revision,
                        known_members=known)


def cluster_status(members: Sequence[MemberStatus], ids: dict[int, str]) -> ClusterStatus:
    leader_id = 0
    for m in members:
        if m.role == "leader":
            leader_id = m.member_id
            break
    else:
        votes = [m.leader_id for m in members if m.error is None and m.leader_id]
        leader_id = max(set(votes), key=votes.count) if votes else 0
    ids = {**ids, **{m.member_id: m.endpoint for m in members if m.member_id}}
    return ClusterStatus(leader_id, ids.get(leader_id), tuple(members))
