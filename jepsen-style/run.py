#!/usr/bin/env python3
"""Thin wrapper: ``python jepsen-style/run.py --workload register --nemesis partition,kill ...`` is
``coterie verify ...`` (the code is the ``coterie.verify`` package, in ``jepsen-style/verify``)."""

from coterie.verify.cli import main

if __name__ == "__main__":
    main()
