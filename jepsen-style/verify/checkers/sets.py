"""The set checker: every acknowledged add must be in the final read.

Given the adds (element -> ``ok`` / ``fail`` / ``info``) and the final read, it reports:

- ``lost``: acknowledged (``ok``) adds missing from the final read: a violation;
- ``unexpected``: elements in the final read that were never added, or whose add definitely failed
  (``fail``): a violation;
- ``recovered``: adds of unknown outcome (``info``) that did take effect (allowed);
- ``valid``: no lost and no unexpected element.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def check_set(adds: Mapping[Any, str], final: Iterable[Any]) -> dict[str, Any]:
    read = set(final)
    ok = {e for e, t in adds.items() if t == "ok"}
    failed = {e for e, t in adds.items() if t == "fail"}
    unknown = {e for e, t in adds.items() if t == "info"}
    lost = sorted(ok - read, key=str)
    unexpected = sorted((read - set(adds)) | (read & failed), key=str)
    recovered = sorted(read & unknown, key=str)
    return {
        "valid": not lost and not unexpected,
        "attempted": len(adds),
        "acknowledged": len(ok),
        "final_size": len(read),
        "lost_count": len(lost),
        "unexpected_count": len(unexpected),
        "recovered_count": len(recovered),
        "unknown_count": len(unknown),
        "lost": lost[:100],
        "unexpected": unexpected[:100],
    }
