"""A linearizability checker for histories of concurrent operations.

A history is a list of :class:`Op` records: who called what on which key, when the call was invoked,
when (and whether) it returned, and what it returned. The history is *linearizable* (Herlihy & Wing
1990) if every operation can be given a single instant, inside its own ``[invoke, complete]``
interval, such that executing the operations one at a time in that order on a sequential
:class:`Model` produces exactly the observed outputs.

Algorithm
---------
The search is the Wing & Gong algorithm (J. M. Wing and C. Gong, "Testing and verifying concurrent
objects", JPDC 1993) with the memoisation of Lowe (G. Lowe, "Testing for linearizability", CCPE
2017, whose "just-in-time linearization" explores the same search space) as implemented by
Porcupine (A. Athalye, github.com/anishathalye/porcupine):

* The history is split per key and every key is checked on its own. A register-per-key history is
  linearizable iff each key's sub-history is (locality / P-compositionality: Herlihy & Wing 1990;
  Horn & Kroening, "Faster linearizability checking via P-compositionality", FORTE 2015).
* Call and return events are sorted by time into a doubly linked list. A depth-first search walks
  the list: any call seen before the first remaining return may be linearized next (if the model
  accepts it), which "lifts" the call and its return out of the list; reaching a return means that
  operation had to be linearized already, so the search backtracks ("unlifts" the last choice). The
  search succeeds when no return is left.
* Every configuration reached, i.e. (set of linearized operations as an ``int`` bitset, model
  state), is cached; a configuration seen before is never explored again. The search is iterative
  (an explicit stack), so 10,000-operation histories need no recursion.

Time ties: intervals are closed. At equal timestamps calls sort before returns, so an operation
that returns at ``t`` and one invoked at ``t`` overlap and may be linearized in either order. That
is the permissive and correct choice when all timestamps come from one clock (Porcupine does the
same); only ``a.complete < b.invoke`` (strictly) forces ``a`` before ``b``.

Operations with an unknown outcome
----------------------------------
An operation whose client gave up (a timeout, a crashed connection) may have taken effect at any
time after its invocation, or never. It is modelled as returning at +infinity with an unconstrained
output: it has no return entry, so nothing ever forces it, and leaving it out entirely is the same
as linearizing it last. Definitely failed operations (``ok=False``) did not happen and are dropped;
unknown-outcome reads constrain nothing and are dropped too (:meth:`Model.relevant`).

Such operations stay pending until the end of the history, which is what makes checking them
expensive (every pending one could be linearized at every step). Five reductions, all sound and
complete (a success path from a pruned configuration implies one at least as short from a
configuration that is, or will be, explored), keep that in check:

1. *Lazy unknowns*, as in Lowe's just-in-time linearization: at each configuration the search first
   tries operations with a known result and only then the unknown ones, all at once (each unknown
   candidate is registered in the cache before any of them is explored).
2. *Subsumption*: a configuration that differs from a seen one only by having linearized *more*
   unknown-outcome operations (same state, same known operations linearized) can do nothing the seen
   one cannot, so it is pruned. The cache maps ``(known bitset, state)`` to the minimal sets of
   linearized unknown operations. In particular an unknown op that leaves the state unchanged, or
   that, applied right after another unknown op, lands on the state it would have reached without
   it (always, for a *blind* op such as a write: :meth:`Model.blind`), is pruned without a lookup.
3. *Read-only operations first*: if a known operation that never changes the state (a read, a failed
   compare-and-set; :meth:`Model.read_only`) is accepted now, linearizing it right away is never
   worse than later, so no alternative is explored at that configuration. This removes the
   exponential blow-up from permutations of concurrent reads.
4. *Symmetry*: unknown-outcome ops that behave identically (:meth:`Model.symmetry_key`) are
   interchangeable, so only the first pending one of each kind is tried. :class:`RegisterModel`
   first merges all written values that no read or cas can observe into one stand-in value
   (:meth:`Model.prepare`), which makes every "lost" write of such a value interchangeable.
5. Unknown-outcome calls live in their own linked list, so the scans for known candidates never
   walk over the (ever-growing) set of pending unknown operations.

The search is exponential in the worst case (checking linearizability is NP-complete: Gibbons &
Korach 1997); ``timeout`` bounds it, yielding ``ok=None``.

When a key is not linearizable, the report names the longest linearizable prefix found and the
operations that were pending where the search got stuck, like Porcupine's partial linearizations.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

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

Status = Literal["ok", "fail", "info"]
"""Outcome of an operation, in Jepsen's terms: ``ok`` completed with a known result, ``fail``
definitely did not happen, ``info`` unknown (may or may not have happened)."""


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "inf"
    return f"{t:g}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Op:
    """One client operation in a history (immutable; all fields are keyword-only).

    Attributes:
        client: id of the client (process) that issued it; informational, not used by the check.
        key: the key it operates on; the history is checked per key.
        kind: ``"read"``, ``"write"`` or ``"cas"`` for :class:`RegisterModel` (other models may
            define other kinds).
        value: the value written (``write``) or swapped in (``cas``); ``None`` for reads.
        expected: the value a ``cas`` compares against (``None`` = "the key has no value").
        invoke: time the call was issued.
        complete: time the result was received; ``None`` if it never was (outcome unknown).
            Ignored when ``ok`` is ``None``: the op may still take effect after the client gave up.
        ok: ``True`` completed with a known result; ``False`` definitely not executed (e.g. rejected
            before it was proposed; such operations are dropped); ``None`` unknown (a timeout: it
            may take effect at any time after ``invoke``, or never).
        output: the result: the value read (``None`` = no value), whether a ``cas`` swapped
            (``True``/``False``); ignored for writes and for unknown outcomes.
    """

    client: int
    key: str
    kind: str
    value: Any = None
    expected: Any = None
    invoke: float
    complete: float | None = None
    ok: bool | None = None
    output: Any = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.invoke):
            raise ValueError(f"invoke time must be finite: {self!r}")
        if self.complete is not None:
            if math.isnan(self.complete):
                raise ValueError(f"complete time is NaN: {self!r}")
            if self.complete < self.invoke:
                raise ValueError(f"operation completes before it is invoked: {self!r}")
        if self.ok is True and self.complete is None:
            raise ValueError(f"ok=True needs a completion time: {self!r}")

    @property
    def status(self) -> Status:
        """``ok`` (known result), ``fail`` (did not happen) or ``info`` (unknown outcome)."""
        if self.ok is False:
            return "fail"
        return "ok" if self.ok is True else "info"

    def completed(self, at: float, output: Any = None) -> Op:
        """A copy that completed successfully at ``at`` with result ``output``."""
        return replace(self, complete=at, ok=True, output=output)

    def as_unknown(self) -> Op:
        """A copy whose outcome is unknown (the client gave up waiting)."""
        return replace(self, complete=None, ok=None, output=None)

    def as_failed(self, at: float | None = None) -> Op:
        """A copy that definitely did not take effect (rejected at ``at``)."""
        return replace(self, complete=at, ok=False)

    def describe(self) -> str:
        """A one-line human-readable rendering, e.g. ``c3 read 'k' -> 5 [1, 2]``."""
        status = self.status
        if self.kind == "read":
            what = f"read {self.key!r}"
            res = f" -> {self.output!r}" if status == "ok" else ""
        elif self.kind == "write":
            what = f"write {self.key!r} := {self.value!r}"
            res = ""
        elif self.kind == "cas":
            what = f"cas {self.key!r} {self.expected!r} -> {self.value!r}"
            res = f" : {'swapped' if self.output else 'not swapped'}" if status == "ok" else ""
        else:
            what = f"{self.kind} {self.key!r} value={self.value!r} expected={self.expected!r}"
            res = f" -> {self.output!r}" if status == "ok" else ""
        if status == "ok":
            span = f"[{_fmt_time(self.invoke)}, {_fmt_time(self.complete)}]"
        elif status == "info":
            span = f"[{_fmt_time(self.invoke)}, inf) UNKNOWN outcome"
        else:
            span = f"[{_fmt_time(self.invoke)}, {_fmt_time(self.complete)}] FAILED"
        return f"c{self.client} {what}{res} {span}"


S = TypeVar("S", bound=Hashable)


class Model(Protocol[S]):
    """A sequential specification: a deterministic state machine over hashable states.

    Implementations should subclass this protocol to inherit the defaults of the optional methods.
    ``step`` is given operations with a known result (``op.ok is True``) and operations with an
    unknown outcome (``op.ok is None``); for the latter the output is unconstrained, so ``step``
    should accept them whenever they could execute at all and return the state they would leave.
    """

    def init(self) -> S:
        """The initial state."""
        ...

    def step(self, state: S, op: Op) -> tuple[bool, S]:
        """Execute ``op`` in ``state``: ``(False, _)`` if its observed result is impossible there,
        else ``(True, new_state)``."""
        ...

    def relevant(self, op: Op) -> bool:
        """Whether ``op`` (not definitely failed) must be checked; ``False`` drops it (e.g. an
        unknown-outcome read). May raise ``ValueError`` for an operation the model cannot handle."""
        return True

    def read_only(self, op: Op) -> bool:
        """Whether ``op`` leaves the state unchanged in *every* state that accepts it. Such ops are
        linearized as soon as they can be, without branching (sound only under that guarantee)."""
        return False

    def blind(self, op: Op) -> bool:
        """Whether the unknown-outcome ``op`` is accepted in every state and leads to the same
        state whatever state it is applied to (e.g. a write). A speed-up hint."""
        return False

    def symmetry_key(self, op: Op) -> Hashable | None:
        """For unknown-outcome ops: ops with equal keys (not ``None``) must behave identically
        in every state, so trying one of them at a time suffices. A speed-up hint."""
        return None

    def prepare(self, ops: Sequence[Op]) -> list[Op]:
        """Rewrite one key's sub-history before the search (same length and order), e.g. to
        merge values that no operation can tell apart. Reports still show the original ops."""
        return list(ops)

    def describe_state(self, state: S) -> str:
        """Human-readable state for failure reports."""
        return repr(state)


class _Unobserved:
    """The single stand-in for written values that no read or compare-and-set can observe."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a value no read or cas observes>"


UNOBSERVED: Hashable = _Unobserved()


class RegisterModel(Model[Hashable]):
    """A register with read, write and compare-and-set, initially without a value (``None``).

    * ``read``: accepted iff ``output`` equals the current value.
    * ``write``: always accepted; the value becomes ``value``.
    * ``cas``: if the current value equals ``expected`` it becomes ``value`` and ``output`` must be
      ``True``; otherwise the value is unchanged and ``output`` must be ``False``. With an unknown
      outcome it simply swaps or not, depending on the state.

    Values must be hashable (histories loaded from JSON turn lists into tuples).
    """

    KINDS = frozenset({"read", "write", "cas"})

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op: Op) -> tuple[bool, Hashable]:
        kind = op.kind
        if kind == "read":
            if op.ok is not True:
                return True, state
            return state == op.output, state
        if kind == "write":
            return True, op.value
        if kind == "cas":
            swapped: bool = state == op.expected
            if op.ok is not True:
                return True, (op.value if swapped else state)
            if op.output is True:
                return swapped, op.value
            return not swapped, state
        raise ValueError(f"RegisterModel: unknown operation kind {kind!r}")

    def relevant(self, op: Op) -> bool:
        if op.kind not in self.KINDS:
            raise ValueError(f"RegisterModel: unknown operation kind {op.kind!r} in {op!r}")
        if op.kind == "cas" and op.ok is True and not isinstance(op.output, bool):
            raise ValueError(f"RegisterModel: a completed cas must output True/False: {op!r}")
        return not (op.kind == "read" and op.ok is not True)

    def read_only(self, op: Op) -> bool:
        return op.ok is True and (op.kind == "read" or (op.kind == "cas" and op.output is False))

    def blind(self, op: Op) -> bool:
        return op.kind == "write"

    def symmetry_key(self, op: Op) -> Hashable | None:
        return (op.kind, op.value, op.expected)

    def prepare(self, ops: Sequence[Op]) -> list[Op]:
        """Replace written values that no completed read returns and no cas expects (nor the
        initial ``None``) by :data:`UNOBSERVED`: no operation can tell such values apart, and
        merging them lets the search treat unknown writes of them as interchangeable."""
        observed: set[Hashable] = {None}
        for op in ops:
            if op.kind == "read" and op.ok is True:
                observed.add(op.output)
            elif op.kind == "cas":
                observed.add(op.expected)
        return [
            replace(op, value=UNOBSERVED)
            if op.kind in ("write", "cas") and op.value not in observed
            else op
            for op in ops
        ]

    def describe_state(self, state: Hashable) -> str:
        return "no value (None)" if state is None else repr(state)


# ---------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Failure:
    """Where the search for one key got stuck (the longest partial linearization found).

    Attributes:
        key: the key whose sub-history is not linearizable.
        prefix: the longest linearizable prefix found, in linearization order (it may include
            unknown-outcome operations that were placed to take effect).
        prefix_indices: positions of ``prefix`` in the history given to :func:`check`.
        state: the model state after ``prefix``.
        state_desc: ``state`` rendered by :meth:`Model.describe_state`.
        blocked: the operation whose return the search could not get past: it had to be linearized
            by then, but no order of the pending operations allows it.
        pending: the operations invoked but not linearized at that point (``blocked`` included),
            ordered by invocation time.
        pending_indices: positions of ``pending`` in the history.
        window: the smallest window the search could not linearize: ``pending`` plus the tail of
            the prefix after its last operation that completed before ``blocked`` was invoked
            (operations concurrent with ``blocked``), ordered by invocation time.
        window_indices: positions of ``window`` in the history.
        notes: per ``window`` operation, its role: its place in the prefix, or what the model says
            about executing it next.
    """

    key: str
    prefix: tuple[Op, ...]
    prefix_indices: tuple[int, ...]
    state: Any
    state_desc: str
    blocked: Op
    blocked_index: int
    pending: tuple[Op, ...]
    pending_indices: tuple[int, ...]
    window: tuple[Op, ...]
    window_indices: tuple[int, ...]
    notes: tuple[str, ...]

    def explain(self, context: int = 8) -> str:
        """A multi-line human-readable account of the failure."""
        lines = [f"key {self.key!r} is NOT linearizable."]
        n = len(self.prefix)
        shown = min(n, context)
        lines.append(
            f"Longest linearizable prefix found: {n} ops"
            + (f" (last {shown} shown):" if shown else ".")
        )
        for idx, op in zip(self.prefix_indices[n - shown :], self.prefix[n - shown :], strict=True):
            lines.append(f"    #{idx:<6} {op.describe()}")
        lines.append(f"  state after the prefix: {self.state_desc}")
        b = self.blocked
        lines.append(
            f"Stuck: #{self.blocked_index} ({b.describe()}) had to take effect before it "
            f"returned at {_fmt_time(b.complete)}, but no order of the operations pending at "
            "that point is consistent with the model. Operations concurrent with it:"
        )
        for idx, op, note in zip(self.window_indices, self.window, self.notes, strict=True):
            mark = "->" if idx == self.blocked_index else "  "
            lines.append(f"  {mark} #{idx:<6} {op.describe()}  [{note}]")
        return "\n".join(lines)


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key.

    Attributes:
        key: the key.
        ok: ``True`` linearizable, ``False`` not, ``None`` unknown (timed out / not reached).
        ops: number of operations checked (after dropping failed ops and unknown reads).
        elapsed: seconds spent on this key.
        linearization: when ``ok``, history positions in a valid linearization order (unknown-
            outcome operations not listed did not take effect, or took effect at the very end).
        failure: when not ``ok``, where the search got stuck.
    """

    key: str
    ok: bool | None
    ops: int
    elapsed: float
    linearization: tuple[int, ...] | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict for a whole history: ``ok`` is ``False`` if any key is not linearizable, else
    ``None`` if any key timed out, else ``True``."""

    ok: bool | None
    per_key: dict[str, KeyResult]
    elapsed: float
    timed_out: bool = False

    @property
    def failures(self) -> list[Failure]:
        """The failure reports of all non-linearizable keys."""
        return [r.failure for r in self.per_key.values() if r.failure is not None]

    @property
    def counterexample(self) -> list[Op]:
        """The window of operations that could not be linearized, for the first failing key."""
        fails = self.failures
        return list(fails[0].window) if fails else []

    def explain(self) -> str:
        """Human-readable verdict; for a failure, the stuck window of every failing key."""
        n_ops = sum(r.ops for r in self.per_key.values())
        head = f"{len(self.per_key)} keys, {n_ops} ops checked in {self.elapsed:.3f}s"
        if self.ok is True:
            return f"linearizable ({head})."
        if self.ok is None:
            unknown = sorted(k for k, r in self.per_key.items() if r.ok is None)
            return f"UNKNOWN: the check timed out; undecided keys: {unknown} ({head})."
        parts = [f"NOT linearizable ({head}); failing keys: "
                 f"{sorted(f.key for f in self.failures)}"]
        parts.extend(f.explain() for f in self.failures)
        return "\n\n".join(parts)


# -------------------------------------------------------------------------------------- checking
_FORCED = 0  # a read-only op linearized as soon as possible: no alternatives at that level
_CHOICE = 1  # one of the known-result candidates; on backtrack, try the next one
_BATCH = 2  # one of the unknown-outcome candidates (all registered up front)


def check(
    history: Iterable[Op],
    model: Model[Any] | None = None,
    timeout: float | None = None,
) -> CheckResult:
    """Check whether ``history`` is linearizable with respect to ``model``.

    Args:
        history: the operations, in any order. Positions in this sequence identify operations in
            reports (``#n``).
        model: the sequential specification, :class:`RegisterModel` by default. Applied to each
            key's sub-history separately.
        timeout: wall-clock budget in seconds for the whole check; keys not decided in time get
            ``ok=None`` (a key found non-linearizable still makes the result ``False``).

    Returns:
        A :class:`CheckResult`; ``explain()`` renders it.
    """
    mdl: Model[Any] = RegisterModel() if model is None else model
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    by_key: dict[str, list[int]] = {}
    ops = list(history)
    for i, op in enumerate(ops):
        if op.ok is False:
            continue
        if not mdl.relevant(op):
            continue
        by_key.setdefault(op.key, []).append(i)
    per_key: dict[str, KeyResult] = {}
    timed_out = False
    for key in sorted(by_key):
        idxs = by_key[key]
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            per_key[key] = KeyResult(key, None, len(idxs), 0.0)
            continue
        res = _check_key(key, ops, idxs, mdl, deadline)
        timed_out = timed_out or res.ok is None
        per_key[key] = res
    verdicts = [r.ok for r in per_key.values()]
    ok: bool | None = (
        False if False in verdicts else None if None in verdicts else True
    )
    return CheckResult(ok, per_key, time.monotonic() - start, timed_out)


def _check_key(
    key: str, history: list[Op], idxs: list[int], model: Model[Any], deadline: float | None
) -> KeyResult:
    """WGL depth-first search over one key's sub-history (see the module docstring)."""
    t0 = time.monotonic()
    originals = [history[i] for i in idxs]
    ops = model.prepare(originals)  # what the model executes; reports show `originals`
    n = len(ops)
    if len(ops) != len(originals):
        raise ValueError("Model.prepare must keep the number and order of operations")
    known = [op.ok is True for op in ops]
    ro = [known[i] and model.read_only(ops[i]) for i in range(n)]
    blind = [False] * n
    sym: list[Hashable | None] = [None] * n
    for i in range(n):
        if not known[i]:
            blind[i] = model.blind(ops[i])
            sym[i] = model.symmetry_key(ops[i])
    bit = [0] * n
    n_known = n_unknown = 0
    for i in range(n):
        if known[i]:
            bit[i] = 1 << n_known
            n_known += 1
        else:
            bit[i] = 1 << n_unknown
            n_unknown += 1

    # Events sorted by (time, call-before-return, position): see "Time ties" in the module doc.
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        if known[i]:
            assert op.complete is not None
            events.append((op.complete, 1, i))
    events.sort()
    n_ev = len(events)
    # Entries 1..n_ev are the events in order (an entry's number is its position in time). Two
    # doubly linked lists: `head`..`tail` holds the calls and returns of known-result ops;
    # `uhead`..`utail` holds the calls of unknown-outcome ops (which have no return entry).
    head, tail, uhead, utail = 0, n_ev + 1, n_ev + 2, n_ev + 3
    nxt = [0] * (n_ev + 4)
    prv = [0] * (n_ev + 4)
    e_op = [0] * (n_ev + 4)
    match = [-1] * (n_ev + 4)  # call: its return entry, 0 if unknown outcome; return/tail: -1
    call_at = [0] * n
    last, ulast = head, uhead
    for pos, (_, is_ret, i) in enumerate(events, start=1):
        e_op[pos] = i
        if is_ret:
            match[call_at[i]] = pos
        else:
            call_at[i] = pos
            match[pos] = 0
        if known[i]:
            nxt[last], prv[pos], last = pos, last, pos
        else:
            nxt[ulast], prv[pos], ulast = pos, ulast, pos
    nxt[last], prv[tail] = tail, last
    nxt[ulast], prv[utail] = utail, ulast

    def lift(e: int) -> None:
        p, q = prv[e], nxt[e]
        nxt[p] = q
        prv[q] = p
        r = match[e]
        if r > 0:
            p, q = prv[r], nxt[r]
            nxt[p] = q
            prv[q] = p

    def unlift(e: int) -> None:
        r = match[e]
        if r > 0:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        nxt[prv[e]] = e
        prv[nxt[e]] = e

    # cache: (known bitset, state) -> minimal bitsets of linearized unknown-outcome ops seen with it
    cache: dict[tuple[int, Any], list[int]] = {}

    def visit(ck: tuple[int, Any], u: int) -> bool:
        """Register a configuration; False if it (or one that subsumes it) was seen already."""
        lst = cache.get(ck)
        if lst is None:
            cache[ck] = [u]
            return True
        for v in lst:
            if v | u == u:  # v is a subset of u: subsumed
                return False
        lst[:] = [v for v in lst if v | u != v]
        lst.append(u)
        return True

    step = model.step
    state: Any = model.init()
    bk = bu = nk = 0
    visit((0, state), 0)
    # frames: [kind, entry, state before, batch: children, index, non-blind candidates, results]
    stack: list[list[Any]] = []
    best_nk = -1
    best: tuple[list[int], Any, int] | None = None  # (prefix entries, state, blocking entry)
    phase = 0  # 0: read-only known candidates; 1: other known candidates
    entry = nxt[head]
    iters = 0
    while True:
        iters += 1
        if deadline is not None and not iters & 1023 and time.monotonic() >= deadline:
            return KeyResult(key, None, n, time.monotonic() - t0)
        blocking = -1
        if phase == 0:
            if entry == tail:  # no return left: every known op is linearized
                lin = tuple(idxs[e_op[f[1]]] for f in stack)
                return KeyResult(key, True, n, time.monotonic() - t0, lin)
            m = match[entry]
            if m < 0:
                phase = 1
                entry = nxt[head]
                continue
            i = e_op[entry]
            if not ro[i]:
                entry = nxt[entry]
                continue
            ok, ns = step(state, ops[i])
            if not ok:
                entry = nxt[entry]
                continue
            nbk = bk | bit[i]
            if visit((nbk, ns), bu):
                stack.append([_FORCED, entry, state, None, 0, None, None])
                lift(entry)
                state, bk, nk = ns, nbk, nk + 1
                entry = nxt[head]
                continue
            # Linearizing this read-only op now is never worse than later, and that was explored.
            blocking = entry
            while match[blocking] >= 0:
                blocking = nxt[blocking]
        else:
            if match[entry] > 0:  # a call
                i = e_op[entry]
                if not ro[i]:
                    ok, ns = step(state, ops[i])
                    if ok:
                        nbk = bk | bit[i]
                        if visit((nbk, ns), bu):
                            stack.append([_CHOICE, entry, state, None, 0, None, None])
                            lift(entry)
                            state, bk, nk = ns, nbk, nk + 1
                            phase = 0
                            entry = nxt[head]
                            continue
                entry = nxt[entry]
                continue
            # Reached the first return: try the unknown-outcome candidates, all registered first.
            blocking = entry
            children: list[tuple[int, Any, int, tuple[int, Any]]] = []
            results: dict[int, Any] = {}
            sibling: dict[int, Any] = {}
            if stack and stack[-1][0] == _BATCH:
                # This configuration is a child of a batch (same known ops, same list). A
                # candidate landing on the state its sibling was registered with (always, for a
                # blind one) has linearized more unknown ops than that sibling: subsumed.
                cur = stack[-1][1]
                cands = [e for e in stack[-1][5] if e != cur]
                sibling = stack[-1][6]
            else:
                cands = []
                e = nxt[uhead]
                while e < blocking:  # utail > every entry, so this stops at the end of the list
                    cands.append(e)
                    e = nxt[e]
            classes: set[Hashable] = set()
            for e in cands:
                i = e_op[e]
                sk = sym[i]
                if sk is not None:
                    if sk in classes:
                        continue  # interchangeable with an earlier candidate
                    classes.add(sk)
                ok, ns = step(state, ops[i])
                if not ok:
                    continue
                results[e] = ns
                if ns == state or (e in sibling and sibling[e] == ns):
                    continue  # subsumed by this configuration / by the sibling
                nbu = bu | bit[i]
                ck = (bk, ns)
                if visit(ck, nbu):
                    children.append((e, ns, nbu, ck))
            if children:
                e, ns, nbu, _ = children[0]
                nonblind = [c for c in cands if not blind[e_op[c]]]
                stack.append([_BATCH, e, state, children, 0, nonblind, results])
                lift(e)
                state, bu = ns, nbu
                phase = 0
                entry = nxt[head]
                continue

        # Dead end: this configuration cannot be extended past `blocking`.
        if nk > best_nk:
            best_nk = nk
            best = ([f[1] for f in stack], state, blocking)
        while True:
            if not stack:
                assert best is not None
                fail = _failure(key, originals, ops, idxs, model, e_op, call_at, best)
                return KeyResult(key, False, n, time.monotonic() - t0, None, fail)
            frame = stack[-1]
            kind, e, state = frame[0], frame[1], frame[2]
            unlift(e)
            i = e_op[e]
            if known[i]:
                bk ^= bit[i]
                nk -= 1
            else:
                bu ^= bit[i]
            if kind == _FORCED:
                stack.pop()
                continue
            if kind == _CHOICE:
                stack.pop()
                phase = 1
                entry = nxt[e]
                break
            children = frame[3]
            j = frame[4] + 1
            while j < len(children):
                e, ns, nbu, ck = children[j]
                if nbu in cache[ck]:  # not subsumed since it was registered
                    break
                j += 1
            if j == len(children):
                stack.pop()
                continue
            frame[1], frame[4] = e, j
            lift(e)
            state, bu = ns, nbu
            phase = 0
            entry = nxt[head]
            break


def _failure(
    key: str,
    originals: list[Op],
    ops: list[Op],
    idxs: list[int],
    model: Model[Any],
    e_op: list[int],
    call_at: list[int],
    best: tuple[list[int], Any, int],
) -> Failure:
    """Build the report for the deepest dead end reached by the search (``ops`` are the
    prepared operations the model executes, ``originals`` what the report shows)."""
    prefix_entries, state, blocking = best
    prefix_pos = [e_op[e] for e in prefix_entries]
    # Replay the prefix on the original ops, so the report shows real values (prepare() may
    # have merged some); fall back to the prepared ops if the model disagrees.
    replayed: Any = model.init()
    for i in prefix_pos:
        accepted, replayed = model.step(replayed, originals[i])
        if not accepted:
            break
    else:
        state, ops = replayed, originals
    lifted = set(prefix_pos)
    b = e_op[blocking]
    # Entries are numbered in event order: pending = not linearized, called before `blocking`.
    pending_pos = sorted(
        (i for i in range(len(ops)) if i not in lifted and call_at[i] < blocking),
        key=call_at.__getitem__,
    )
    blocked_invoke = ops[b].invoke
    # The prefix after its last op that completed before the blocked op was invoked: those ops
    # are concurrent with it and could have been ordered differently.
    last_before = -1
    for k, i in enumerate(prefix_pos):
        done = ops[i].complete
        if ops[i].ok is True and done is not None and done < blocked_invoke:
            last_before = k
    concurrent = {i: k for k, i in enumerate(prefix_pos) if k > last_before}
    window_pos = sorted([*concurrent, *pending_pos], key=call_at.__getitem__)
    notes: list[str] = []
    for i in window_pos:
        op = ops[i]
        tag = "unknown outcome; " if op.ok is not True else ""
        if i in concurrent:
            notes.append(f"{tag}linearized as op {concurrent[i] + 1} of the prefix")
            continue
        ok, ns = model.step(state, op)
        if not ok:
            notes.append(f"{tag}pending; rejected by the model in this state")
        else:
            notes.append(f"{tag}pending; accepted -> {model.describe_state(ns)}, but a dead end")
    return Failure(
        key=key,
        prefix=tuple(originals[i] for i in prefix_pos),
        prefix_indices=tuple(idxs[i] for i in prefix_pos),
        state=state,
        state_desc=model.describe_state(state),
        blocked=originals[b],
        blocked_index=idxs[b],
        pending=tuple(originals[i] for i in pending_pos),
        pending_indices=tuple(idxs[i] for i in pending_pos),
        window=tuple(originals[i] for i in window_pos),
        window_indices=tuple(idxs[i] for i in window_pos),
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------------ JSON lines
_FIELDS = ("client", "key", "kind", "value", "expected", "invoke", "complete", "ok", "output")


def history_to_jsonl(ops: Iterable[Op]) -> str:
    """Serialize a history as JSON Lines: one object per operation with the :class:`Op` fields
    (``complete``/``ok`` ``null`` when unknown). Values must be JSON-serializable."""
    out: list[str] = []
    for op in ops:
        obj = {f: getattr(op, f) for f in _FIELDS}
        out.append(json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n")
    return "".join(out)


def _freeze(v: Any) -> Any:
    """JSON arrays become tuples (hashable model states); objects become sorted item tuples."""
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def history_from_jsonl(lines: str | Iterable[str]) -> list[Op]:
    """Parse :func:`history_to_jsonl` output (a string, or an iterable of lines such as an open
    file). Blank lines and lines starting with ``#`` are skipped; unknown fields are ignored."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    ops: list[Op] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise TypeError("not a JSON object")
            complete = obj.get("complete")
            ok = obj.get("ok")
            if ok is not None and not isinstance(ok, bool):
                raise TypeError(f"ok must be true/false/null, got {ok!r}")
            ops.append(
                Op(
                    client=int(obj["client"]),
                    key=str(obj["key"]),
                    kind=str(obj["kind"]),
                    value=_freeze(obj.get("value")),
                    expected=_freeze(obj.get("expected")),
                    invoke=float(obj["invoke"]),
                    complete=None if complete is None else float(complete),
                    ok=ok,
                    output=_freeze(obj.get("output")),
                )
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"history line {lineno}: {exc!s}: {line[:200]}") from exc
    return ops


# ------------------------------------------------------------------------ random valid histories
def random_register_history(
    seed: int,
    n_ops: int = 200,
    *,
    keys: int = 1,
    clients: int = 5,
    unknown_rate: float = 0.02,
    fail_rate: float = 0.01,
    integer_times: bool = False,
) -> list[Op]:
    """A random *linearizable* register history, by simulating a real register.

    ``clients`` clients each issue one operation at a time (45% reads, 35% writes, 20% cas with an
    ``expected`` drawn from the key's recent values) on ``keys`` keys, with exponential latencies.
    Every operation takes effect atomically at a random instant inside its ``[invoke, complete]``
    interval; outputs are computed by applying the operations in that order. A fraction
    ``unknown_rate`` of the operations lose their completion (outcome unknown): a write or cas then
    takes effect with probability 1/2, possibly long after the client gave up (a late commit), or
    never. A fraction ``fail_rate`` are definitely failed (never take effect). With
    ``integer_times`` the interval ends are rounded outwards to integers, producing many ties.
    Written values are unique integers.
    """
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    free = [(rng.random(), c) for c in range(clients)]
    heapq.heapify(free)
    recent: dict[str, list[Any]] = {k: [None] for k in names}
    # per op: fields, and the instant it takes effect (None = never)
    specs: list[tuple[dict[str, Any], float | None]] = []
    counter = 0
    for _ in range(n_ops):
        t0, c = heapq.heappop(free)
        key = rng.choice(names)
        roll = rng.random()
        kind = "read" if roll < 0.45 else "write" if roll < 0.8 else "cas"
        t1 = t0 + rng.expovariate(1.0)
        at: float | None = rng.uniform(t0, t1)
        f: dict[str, Any] = {"client": c, "key": key, "kind": kind, "invoke": t0}
        if kind != "read":
            counter += 1
            if kind == "cas":
                f["expected"] = rng.choice(recent[key][-3:])
            f["value"] = counter
            recent[key].append(counter)
        r = rng.random()
        end = t1
        if r < fail_rate:
            f.update(complete=t1, ok=False)
            at = None
        elif r < fail_rate + unknown_rate:
            f.update(complete=None, ok=None)
            at = t0 + rng.expovariate(0.2) if kind != "read" and rng.random() < 0.5 else None
            end = t0 + 5.0  # the client times out and moves on
        else:
            f.update(complete=t1, ok=True)
        specs.append((f, at))
        heapq.heappush(free, (end + rng.expovariate(4.0), c))
    values: dict[str, Any] = dict.fromkeys(names)
    order = sorted((at, i) for i, (_, at) in enumerate(specs) if at is not None)
    for _, i in order:
        f = specs[i][0]
        cur = values[f["key"]]
        if f["kind"] == "read":
            f["output"] = cur
        elif f["kind"] == "write":
            values[f["key"]] = f["value"]
        else:
            swapped = cur == f["expected"]
            if swapped:
                values[f["key"]] = f["value"]
            if f["ok"] is True:
                f["output"] = swapped
    result: list[Op] = []
    for f, _ in specs:
        if f["kind"] == "cas" and f["ok"] is not None and "output" not in f:
            f["output"] = False  # a failed cas: never executed; any output is ignored
        if integer_times:
            f["invoke"] = float(math.floor(f["invoke"]))
            if f["complete"] is not None:
                f["complete"] = float(math.ceil(f["complete"]))
        result.append(Op(**f))
    return result
