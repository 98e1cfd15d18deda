"""Summarize a ``py-spy record -f raw`` profile: the functions with the most samples.

``python -m coterie.bench.profile FILE [--top N]`` prints, per function (``name (file)``, line numbers
merged), the share of all samples in which it is on the stack (*inclusive*) and in which it is the
innermost frame (*self*). Each sample counts at most once per function, so inclusive shares never
exceed 100 %.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _func(frame: str) -> str:
    """``handle (coterie/node/server/driver.py:123)`` -> ``handle (.../server/driver.py)``."""
    frame = _LINE.sub(")", frame.strip())
    name, sep, path = frame.partition(" (")
    if sep:
        parts = path.rstrip(")").split("/")
        frame = f"{name} ({'/'.join(parts[-2:])})"
    return frame


def _file(func: str) -> str:
    """``name (server/driver.py)`` -> ``server/driver.py``; native frames -> their library."""
    _, sep, path = func.partition(" (")
    return path.rstrip(")") if sep else func


def summarize(text: str) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """Total samples; inclusive and self sample counts per function; self counts per file."""
    total = 0
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [_func(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        for f in set(frames):
            incl[f] += count
        self_[frames[-1]] += count
        by_file[_file(frames[-1])] += count
    return total, incl, self_, by_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args(argv)
    total, incl, self_, by_file = summarize(a.file.read_text())
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples\n\nself %   function")
    for f, c in self_.most_common(a.top):
        print(f"{100 * c / total:6.1f}   {f}")
    print("\nself %   file (or native library)")
    for f, c in by_file.most_common(a.top):
        print(f"{100 * c / total:6.1f}   {f}")
    print("\ninclusive %   function")
    for f, c in incl.most_common(a.top):
        print(f"{100 * c / total:6.1f}        {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
