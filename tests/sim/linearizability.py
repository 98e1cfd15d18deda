"""Re-export of the linearizability checker, which lives in :mod:`coterie.verify.checkers.linearizability`
(``jepsen-style/verify/checkers/linearizability.py``) so that the simulation and the Jepsen-style suite
share one implementation."""

from coterie.verify.checkers.linearizability import (
    UNOBSERVED,
    CheckResult,
    Failure,
    KeyResult,
    Model,
    Op,
    RegisterModel,
    Status,
    check,
    history_from_jsonl,
    history_to_jsonl,
    random_register_history,
)

__all__ = [
    "UNOBSERVED",
    "CheckResult",
    "Failure",
    "KeyResult",
    "Model",
    "Op",
    "RegisterModel",
    "Status",
    "check",
    "history_from_jsonl",
    "history_to_jsonl",
    "random_register_history",
]
