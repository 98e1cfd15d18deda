"""The lock checker: fenced increments of one counter under a lock, checked against the counter's
exact history.

Inputs:

- ``writes``: every fenced write attempted, as :class:`FencedWrite`: the holder's token, the value
  it read, its outcome (``ok``, ``rejected`` = refused with FenceRejected, ``fail`` = definitely not
  applied for another reason, ``info`` = unknown), when it was invoked and whether the holder had
  been paused past its TTL (a simulated GC pause) before sending it;
- ``acquired``: ``(token, time)`` of every acknowledged acquisition (the time the client learnt it
  holds the lock);
- ``sequence``: the counter's history after the initial value, in revision order, as ``(count,
  token)`` pairs: each write that took effect wrote ``read + 1`` and its token (read from the MVCC
  history by a watch from the initial revision);
- ``final``: the final counter value (a linearizable read after healing).

Violations (each a capped list):

- ``lost_updates``: two acknowledged writes that read the same value (both critical sections ran
  on the same state: mutual exclusion broke), or the sequence not counting 1, 2, 3, ... (an
  increment overwrote another, or a value was written twice);
- ``token_order``: a token not above the previous one along the sequence (fencing tokens must
  increase strictly in the order the writes took effect);
- ``lost_acknowledged``: an acknowledged write absent from the sequence;
- ``failed_applied``: a write refused (or definitely failed) that is in the sequence;
- ``phantom``: a sequence entry no client attempted;
- ``stale_accepted``: an acknowledged write by token ``t`` invoked after a holder with a larger
  token had acquired the lock (acknowledged): the old holder's key was gone, so the fence must
  refuse it;
- ``count_mismatch``: the final value differs from the sequence's length, or is outside
  ``[acknowledged, acknowledged + unknown]``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CAP = 50


@dataclass(frozen=True)
class FencedWrite:
    token: int
    read: int
    outcome: str
    """``ok`` / ``rejected`` / ``fail`` / ``info``."""
    invoked: float
    paused: bool = False


def check_lock(writes: Sequence[FencedWrite], acquired: Sequence[tuple[int, float]],
               sequence: Sequence[tuple[int, int]], final: int) -> dict[str, Any]:
    lost_updates: list[str] = []
    token_order: list[str] = []
    for i, (count, token) in enumerate(sequence):
        if count != i + 1:
            lost_updates.append(f"entry {i + 1} of the counter history is {count} (token {token}), "
                                f"not {i + 1}")
        if i and token <= sequence[i - 1][1]:
            token_order.append(f"token {token} wrote {count} after token {sequence[i - 1][1]} "
                               f"wrote {sequence[i - 1][0]}")
    ok = [w for w in writes if w.outcome == "ok"]
    by_read: dict[int, list[FencedWrite]] = {}
    for w in ok:
        by_read.setdefault(w.read, []).append(w)
    for read, ws in sorted(by_read.items()):
        if len(ws) > 1:
            tokens = sorted(w.token for w in ws)
            lost_updates.append(f"acknowledged writes of tokens {tokens} all read {read}")
    attempted = {(w.read + 1, w.token): w for w in writes}
    in_seq = set(sequence)
    lost_ack = [f"token {w.token} wrote {w.read + 1}" for w in ok if (w.read + 1, w.token) not in in_seq]
    failed_applied = [f"token {w.token} wrote {w.read + 1} ({w.outcome})" for w in writes
                      if w.outcome in ("rejected", "fail") and (w.read + 1, w.token) in in_seq]
    phantom = [f"{count} by token {token}" for count, token in sequence if (count, token) not in attempted]
    # Acknowledged acquisitions by time, with the largest token acquired up to each.
    acq = sorted(acquired, key=lambda a: a[1])
    times = [t for _, t in acq]
    best: list[int] = []
    for tok, _ in acq:
        best.append(max(tok, best[-1]) if best else tok)
    stale: list[str] = []
    for w in ok:
        i = bisect.bisect_left(times, w.invoked)  # acquisitions acknowledged before the write began
        if i and best[i - 1] > w.token:
            note = " (after a pause)" if w.paused else ""
            stale.append(f"token {w.token} wrote {w.read + 1} at {w.invoked:.3f} s although token "
                         f"{best[i - 1]} had acquired the lock before{note}")
    unknown = sum(1 for w in writes if w.outcome == "info")
    mismatch: list[str] = []
    if final != len(sequence):
        mismatch.append(f"final counter {final} but {len(sequence)} increments in its history")
    if not len(ok) <= final <= len(ok) + unknown:
        mismatch.append(f"final counter {final} outside [{len(ok)} acknowledged, {len(ok) + unknown} "
                        f"acknowledged + unknown]")
    paused = [w for w in writes if w.paused]
    valid = not (lost_updates or token_order or lost_ack or failed_applied or phantom or stale or mismatch)
    return {
        "valid": valid,
        "attempted": len(writes),
        "acknowledged": len(ok),
        "rejected": sum(1 for w in writes if w.outcome == "rejected"),
        "failed": sum(1 for w in writes if w.outcome == "fail"),
        "unknown": unknown,
        "recovered": sum(1 for w in writes if w.outcome == "info" and (w.read + 1, w.token) in in_seq),
        "acquisitions": len(acquired),
        "final": final,
        "paused_writes": len(paused),
        "paused_rejected": sum(1 for w in paused if w.outcome == "rejected"),
        "paused_accepted": sum(1 for w in paused if w.outcome == "ok"),
        "lost_updates": lost_updates[:CAP],
        "token_order": token_order[:CAP],
        "lost_acknowledged": lost_ack[:CAP],
        "failed_applied": failed_applied[:CAP],
        "phantom": phantom[:CAP],
        "stale_accepted": stale[:CAP],
        "count_mismatch": mismatch,
    }
