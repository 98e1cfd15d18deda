"""The coterie client library (arrives with the running-cluster work)."""
