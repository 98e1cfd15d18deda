"""Workloads: one module each (its generator, its client calls and its checker); see :mod:`.base`."""
