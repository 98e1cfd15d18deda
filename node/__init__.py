"""The coterie node: Raft core, durable storage and (later) the gRPC server and gossip."""
