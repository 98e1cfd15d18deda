"""Nemeses: faults injected on a schedule and healed at the end; see :mod:`.base`."""
