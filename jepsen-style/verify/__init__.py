"""coterie.verify: Jepsen-style verification of a running coterie cluster.

Real ``coterie node`` processes (the ``local`` backend on loopback, or the ``netns`` backend with one
network namespace per node) run a workload (register, set, watch) while a nemesis injects faults
(partitions, kill -9, SIGSTOP pauses, slow or lossy links). Every client call is recorded as an
invocation and a completion; at the end the history is checked (linearizability per key, set
membership, watch delivery) and a report is written under ``store/<workload>-<nemesis>/<time>/``.

Layout: :mod:`.checkers` (pure functions over histories), :mod:`.workloads` (one module per
workload: generator, client calls, checker), :mod:`.nemesis` (fault schedules), :mod:`.backends`
(where nodes run and how faults are made), :mod:`.runner` (one run), :mod:`.report` (files),
:mod:`.cli` (``coterie verify`` and ``jepsen-style/run.py``), :mod:`.registry` (the one registry
style: :data:`.backends.BACKENDS`, :data:`.nemesis.NEMESES`, :data:`.workloads.WORKLOADS`).
"""
