"""Benchmark harness for a running coterie cluster and its peers (etcd, PySyncObj).

``scripts/bench-peers`` is the entry point; :mod:`coterie.bench.cluster` starts and stops 3-member
clusters on loopback, :mod:`coterie.bench.etcd_load` and :mod:`coterie.bench.pysyncobj_node` drive the
peers with the same load generator as ``coterie bench`` (:func:`coterie.bench.load.run_load`).
"""
