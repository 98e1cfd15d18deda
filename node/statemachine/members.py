"""The replicated member address book: every member's name, peer address and client address.

The Raft core decides *who* is a member (voters and learners); this table, part of the replicated
state machine, says *where* each member is, so every node can name the leader's client address in a
redirect and list every member's addresses. It changes only through committed log entries, so every
replica holds the same table at the same applied index, and it is part of :meth:`StateMachine.snapshot`:

- a membership change (a ``CONF_CHANGE`` entry) is applied with :meth:`MemberTable.member_added` or
  :meth:`MemberTable.member_removed`. The change's ``context`` carries the new member's attributes,
  encoded by :func:`encode_member_context` (empty for the bootstrap entries of a new cluster and for
  a promotion);
- a member publishes its own attributes with a :class:`~.types.MemberAttrsRequest` command (like
  etcd's member attribute publication), applied with :meth:`MemberTable.set_attrs`.

Invariants:

- a removed id stays in :attr:`MemberTable.removed` (ids are never reused), is no longer a key of
  the table, and :meth:`set_attrs` refuses it; only a later add of the same id (which the node layer
  never proposes) takes it out again, so the table always follows the committed configuration;
- the table is a pure function of the applied entries: no clock, no randomness, and :meth:`dump`
  lists members and removed ids sorted by id, so equal tables give equal bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import pack, unpack
from .errors import InvalidArgument

__all__ = [
    "MEMBER_CONTEXT_VERSION",
    "MemberAttrs",
    "MemberTable",
    "decode_member_context",
    "encode_member_context",
]

MEMBER_CONTEXT_VERSION = 1


@dataclass(frozen=True, slots=True)
class MemberAttrs:
    """What a member is called and where it listens; ``""`` means not known (yet)."""

    name: str = ""
    peer_addr: str = ""
    """host:port of its RaftPeer service."""
    client_addr: str = ""
    """host:port of its KV, Session and Cluster services."""

    def merged(self, newer: MemberAttrs) -> MemberAttrs:
        """These attributes with every non-empty field of ``newer`` taking precedence."""
        return MemberAttrs(
            newer.name or self.name,
            newer.peer_addr or self.peer_addr,
            newer.client_addr or self.client_addr,
        )


def encode_member_context(attrs: MemberAttrs) -> bytes:
    """The ``context`` of a membership change that adds a member: msgpack
    ``[version, name, peer_addr, client_addr]``."""
    return pack([MEMBER_CONTEXT_VERSION, attrs.name, attrs.peer_addr, attrs.client_addr])


def decode_member_context(data: bytes) -> MemberAttrs:
    """Inverse of :func:`encode_member_context`. Empty or unreadable data gives empty attributes (the
    same on every replica), so a membership change is never refused for its context."""
    if not data:
        return MemberAttrs()
    try:
        obj = unpack(data)
    except InvalidArgument:
        return MemberAttrs()
    if (type(obj) is not list or len(obj) < 4 or obj[0] != MEMBER_CONTEXT_VERSION
            or not all(type(x) is str for x in obj[1:4])):
        return MemberAttrs()
    return MemberAttrs(obj[1], obj[2], obj[3])


class MemberTable:
    """Member id -> :class:`MemberAttrs`, and the ids removed for good.

    ``version`` counts the changes applied since this object was created or loaded, so an observer
    can cheaply tell whether anything moved; it is not part of the replicated state.
    """

    def __init__(self) -> None:
        self._members: dict[int, MemberAttrs] = {}
        self._removed: set[int] = set()
        self.version = 0

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._members

    def get(self, member_id: int) -> MemberAttrs | None:
        return self._members.get(member_id)

    def items(self) -> list[tuple[int, MemberAttrs]]:
        """Every member and its attributes, by id."""
        return sorted(self._members.items())

    @property
    def removed(self) -> frozenset[int]:
        return frozenset(self._removed)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self._removed

    def member_added(self, member_id: int, attrs: MemberAttrs) -> None:
        """A committed change added ``member_id`` (voter or learner) or promoted it. Known fields are
        kept where ``attrs`` leaves them empty (a promotion carries none)."""
        old = self._members.get(member_id, MemberAttrs())
        self._members[member_id] = old.merged(attrs)
        self._removed.discard(member_id)
        self.version += 1

    def member_removed(self, member_id: int) -> None:
        """A committed change removed ``member_id``; its id is never accepted again by :meth:`set_attrs`."""
        self._members.pop(member_id, None)
        self._removed.add(member_id)
        self.version += 1

    def set_attrs(self, member_id: int, attrs: MemberAttrs) -> None:
        """Replace the attributes ``member_id`` published (empty fields keep their value).
        :class:`InvalidArgument` if the member was removed."""
        if member_id <= 0:
            raise InvalidArgument(f"member id must be positive, got {member_id}")
        if member_id in self._removed:
            raise InvalidArgument(f"member {member_id} was removed from the cluster")
        old = self._members.get(member_id, MemberAttrs())
        new = old.merged(attrs)
        if new != old or member_id not in self._members:
            self._members[member_id] = new
            self.version += 1

    def copy(self) -> MemberTable:
        t = MemberTable()
        t._members = dict(self._members)
        t._removed = set(self._removed)
        return t

    def dump(self) -> list[Any]:
        """``[[[id, name, peer_addr, client_addr], ...], [removed id, ...]]``, both sorted by id."""
        return [
            [[i, a.name, a.peer_addr, a.client_addr] for i, a in sorted(self._members.items())],
            sorted(self._removed),
        ]

    @classmethod
    def load(cls, obj: Any) -> MemberTable:
        """A table from :meth:`dump` output; :class:`InvalidArgument` if malformed."""
        if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not list or type(obj[1]) is not list:
            raise InvalidArgument("malformed member table")
        t = cls()
        for item in obj[0]:
            if (type(item) is not list or len(item) != 4 or type(item[0]) is not int or item[0] <= 0
                    or not all(type(x) is str for x in item[1:])):
                raise InvalidArgument(f"malformed member record {item!r:.80}")
            if item[0] in t._members:
                raise InvalidArgument(f"member {item[0]} appears twice in the member table")
            t._members[item[0]] = MemberAttrs(item[1], item[2], item[3])
        for mid in obj[1]:
            if type(mid) is not int or mid <= 0 or mid in t._members:
                raise InvalidArgument(f"malformed removed member id {mid!r:.40}")
            t._removed.add(mid)
        return t

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MemberTable) and self._members == other._members
                and self._removed == other._removed)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MemberTable({self.items()!r}, removed={sorted(self._removed)!r})"

