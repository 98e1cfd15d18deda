"""The watch checker: every watcher saw every change exactly once, in revision order, and what it
saw matches the history.

Inputs:

- ``streams``: per watcher, the events it received, in order: ``(revision, type, key, value)``
  (type ``PUT`` / ``DELETE``, value ``None`` for a delete), all from one starting revision;
- ``reference``: the events of a fresh watch from the same starting revision, read after the
  cluster healed, up to ``end_revision``;
- ``writes``: the acknowledged writes ``(revision, type, key, value)`` (the revision the cluster
  answered), and ``attempted``: every ``(type, key, value)`` a client tried;
- ``final``: the final read of the prefix, ``key -> (mod_revision, value)``;
- ``end_revision``: the revision of the last write (a marker written after healing).

Violations reported (each a list, capped):

- ``out_of_order``: a watcher saw a revision not above the previous one (a duplicate or a step back);
- ``missing``: a watcher's stream up to ``end_revision`` differs from the reference (events missing,
  extra or different): it is compared exactly, so gaps and duplicates both show;
- ``incomplete``: a watcher never got to ``end_revision``;
- ``lost_writes``: an acknowledged write absent from the reference at its revision;
- ``unexpected``: a reference event that no client attempted;
- ``final_mismatch``: the last reference event of a key disagrees with the final read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WatchEv = tuple[int, str, str, Any]


def check_watch(streams: Mapping[int, Sequence[WatchEv]], reference: Sequence[WatchEv],
                writes: Sequence[WatchEv], attempted: set[tuple[str, str, Any]],
                final: Mapping[str, tuple[int, Any]], end_revision: int) -> dict[str, Any]:
    ref = [tuple(e) for e in reference if e[0] <= end_revision]
    out_of_order: list[str] = []
    missing: list[str] = []
    incomplete: list[int] = []
    for w, evs in sorted(streams.items()):
        prev = 0
        for e in evs:
            if e[0] <= prev:
                out_of_order.append(f"watcher {w}: revision {e[0]} after {prev}")
            prev = max(prev, e[0])
        if prev < end_revision:
            incomplete.append(w)
        mine = [tuple(e) for e in evs if e[0] <= end_revision]
        if mine != ref:
            a, b = set(mine), set(ref)
            first = next((i for i, (x, y) in enumerate(zip(mine, ref, strict=False)) if x != y),
                         min(len(mine), len(ref)))
            missing.append(f"watcher {w}: {len(mine)} events vs {len(ref)} in the reference; "
                           f"{len(b - a)} missing, {len(a - b)} extra; first difference at position {first}")
    ref_at = {e[0]: e for e in ref}
    lost = [f"{w}" for w in writes if w[0] <= end_revision and ref_at.get(w[0]) != tuple(w)]
    unexpected = [f"{e}" for e in ref if (e[1], e[2], e[3]) not in attempted]
    last: dict[str, WatchEv] = {}
    for e in ref:
        last[e[2]] = e
    mismatch: list[str] = []
    for key in sorted(set(last) | set(final)):
        le = last.get(key)
        f = final.get(key)
        if le is None:
            mismatch.append(f"{key}: in the final read {f} but never seen by a watch")
        elif le[1] == "DELETE":
            if f is not None:
                mismatch.append(f"{key}: last event a delete at {le[0]} but the final read has {f}")
        elif f is None or (f[0], f[1]) != (le[0], le[3]):
            mismatch.append(f"{key}: last event {le} but the final read has {f}")
    valid = not (out_of_order or missing or incomplete or lost or unexpected or mismatch)
    return {
        "valid": valid,
        "watchers": len(streams),
        "reference_events": len(ref),
        "acknowledged_writes": len(writes),
        "end_revision": end_revision,
        "out_of_order": out_of_order[:50],
        "missing": missing[:50],
        "incomplete": incomplete,
        "lost_writes": lost[:50],
        "unexpected": unexpected[:50],
        "final_mismatch": mismatch[:50],
    }
