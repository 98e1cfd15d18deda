"""The lease checker: the two lease promises (``coterie.node.server.lease_timer``), from one
process's monotonic timestamps.

Each :class:`LeaseRec` is one lease: granted, a key attached, kept alive by its holder until
``stopped`` (then left to expire), with ``valid_until`` = the send time of its last answered
grant or keep-alive + TTL x (1 - rho) (the client's ``lease.valid_until``, read once the keep-alive
had stopped, so no later answer can raise it), ``deleted`` = when an observer's watch saw the
attached key's DELETE (an upper bound of when it was deleted), and ``absent_reads`` = completion
times of the holder's own reads of its key that found it gone.

Violations:

- ``early`` (safety): the key was deleted before ``valid_until``: seen deleted by the observer
  before it, or a holder's read that completed before it found the key gone (the delete happened
  before the read completed). While the holder keeps the lease alive successfully ``valid_until``
  keeps moving ahead, so this also covers "a holder still keeping alive lost its lease".
- ``late`` (liveness): the delete was seen more than ``TTL + allowance`` after the holder stopped
  (or never, although that much time had passed by the end of the run). Observed lateness includes
  the observer's own delay (a watch resuming after a fault), so it is an upper bound; the maximum is
  reported as ``max_lateness``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CAP = 50


@dataclass
class LeaseRec:
    process: int
    lease_id: int
    key: str
    ttl: float
    attached: str
    """Outcome of the put attaching the key: ``ok`` / ``fail`` / ``info``."""
    granted: float
    stopped: float | None = None
    valid_until: float | None = None
    lost_client_side: bool = False
    """The client marked the lease lost before the holder stopped (its keep-alives failed)."""
    deleted: float | None = None
    absent_reads: list[float] = field(default_factory=list)


def check_leases(leases: Sequence[LeaseRec], allowance: float, end: float) -> dict[str, Any]:
    early: list[str] = []
    late: list[str] = []
    max_late = float("-inf")
    min_margin = float("inf")
    checked = 0
    for r in leases:
        if r.attached == "fail" or (r.attached == "info" and r.deleted is None and not r.absent_reads):
            continue  # no key attached (or none known): nothing to observe
        checked += 1
        vu = r.valid_until
        if vu is not None:
            if r.deleted is not None:
                min_margin = min(min_margin, r.deleted - vu)
                if r.deleted < vu:
                    early.append(f"lease {r.lease_id:x} (p{r.process}, ttl {r.ttl:g}): key deleted by "
                                 f"{r.deleted:.3f} s, {vu - r.deleted:.3f} s before valid_until {vu:.3f} s")
            bad = [t for t in r.absent_reads if t < vu]
            if bad:
                early.append(f"lease {r.lease_id:x} (p{r.process}, ttl {r.ttl:g}): its holder found the key "
                             f"gone by {bad[0]:.3f} s, {vu - bad[0]:.3f} s before valid_until {vu:.3f} s")
        if r.stopped is not None:
            bound = r.stopped + r.ttl
            if r.deleted is not None:
                lateness = r.deleted - bound
                max_late = max(max_late, lateness)
                if lateness > allowance:
                    late.append(f"lease {r.lease_id:x} (p{r.process}): deleted {lateness:.3f} s after "
                                f"stop + TTL (allowance {allowance:g} s)")
            elif end - bound > allowance:
                late.append(f"lease {r.lease_id:x} (p{r.process}): never seen deleted, "
                            f"{end - bound:.3f} s after stop + TTL")
    return {
        "valid": not early and not late,
        "leases": len(leases),
        "checked": checked,
        "deleted_seen": sum(1 for r in leases if r.deleted is not None),
        "lost_client_side": sum(1 for r in leases if r.lost_client_side),
        "allowance": allowance,
        "max_lateness": None if max_late == float("-inf") else round(max_late, 3),
        "min_safety_margin": None if min_margin == float("inf") else round(min_margin, 3),
        "early": early[:CAP],
        "early_count": len(early),
        "late": late[:CAP],
        "late_count": len(late),
    }
