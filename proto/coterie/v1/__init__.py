"""Generated protobuf messages and gRPC stubs of the coterie v1 API (raft, kv, cluster).

Do not edit the ``*_pb2*`` modules: change ``*.proto`` and run ``scripts/gen-proto``.
"""
