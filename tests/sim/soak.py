"""Long-running simulation: ``scripts/test --soak [N]`` (or ``python -m tests.sim.soak``).

Runs N random schedules across 3- and 5-node clusters on every core and prints progress; the first
failing seed is printed with its trace and replays exactly with ``--seed``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time

from .cluster import SafetyViolation, run_seed


def _one(seed: int) -> tuple[int, str | None, int]:
    nodes = 3 if seed % 2 == 0 else 5
    try:
        r = run_seed(seed, nodes=nodes)
        return seed, None, r.history_len
    except SafetyViolation as exc:
        return seed, str(exc), 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schedules", type=int, default=200_000)
    ap.add_argument("--start", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, help="replay one seed and print its stats")
    ap.add_argument("--workers", type=int, default=mp.cpu_count())
    args = ap.parse_args(argv)
    if args.seed is not None:
        seed, err, n = _one(args.seed)
        print(err or f"seed {seed}: ok, {n} operations")
        return 1 if err else 0
    t0 = time.monotonic()
    ops = 0
    with mp.Pool(args.workers) as pool:
        seeds = range(args.start, args.start + args.schedules)
        for i, (_seed, err, n) in enumerate(pool.imap_unordered(_one, seeds, chunksize=16), 1):
            if err:
                print(f"FAILED after {i} schedules:\n{err}", file=sys.stderr)
                pool.terminate()
                return 1
            ops += n
            if i % 1000 == 0:
                dt = time.monotonic() - t0
                print(f"{i} schedules ok, {ops} client operations checked, {i / dt:.0f} schedules/s",
                      flush=True)
    print(f"all {args.schedules} schedules passed in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
