"""Benchmark harness for a running coterie cluster and its peers (etcd, PySyncObj).

``scripts/bench-peers`` is the entry point; :mod:`bench.cluster` starts and stops 3-member clusters on
loopback, :mod:`bench.etcd_load` and :mod:`bench.pysyncobj_node` drive the peers with the same load
generator as ``coterie bench`` (:func:`coterie.client._bench.run_load`).
"""
