"""The wire contract beside the protobuf schema: the gRPC metadata keys that server and client share.

This is the one place these names are written; ``coterie.node.server`` sends them and
``coterie.client`` reads them. Error kinds are the ``ErrorCode`` enum of ``kv.proto``
(``kv_pb2.ErrorCode``), carried in an ``ErrorDetail`` under :data:`ERROR_DETAIL_KEY`.
"""

from __future__ import annotations

__all__ = ["ERROR_DETAIL_KEY", "LEADER_ADDR_KEY", "LEADER_ID_KEY", "MEMBER_REMOVED_KEY"]

LEADER_ID_KEY = "coterie-leader-id"
"""Trailing metadata of a refusal by a member that is not the leader: the leader's member id (decimal),
when the member knows one."""

LEADER_ADDR_KEY = "coterie-leader-addr"
"""Trailing metadata beside :data:`LEADER_ID_KEY`: the leader's client address (``host:port``)."""

ERROR_DETAIL_KEY = "coterie-error-bin"
"""Trailing metadata: a serialized ``kv_pb2.ErrorDetail`` (``-bin`` keys carry bytes in gRPC)."""

MEMBER_REMOVED_KEY = "coterie-member-removed"
"""Trailing metadata of a peer call refused because its sender was removed from the cluster."""
