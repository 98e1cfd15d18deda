"""The coterie node process: the driver that owns the Raft core, peer transport and gRPC services."""
