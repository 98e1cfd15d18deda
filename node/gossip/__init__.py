"""A pure SWIM + Lifeguard gossip core: no I/O, no clock, no threads, no global randomness.

SWIM: A. Das, I. Gupta, A. Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
Membership Protocol", DSN 2002. Lifeguard: A. Dadgar, J. Phillips, J. Currey, "Lifeguard: Local Health
Awareness for More Accurate Failure Detection", 2018. The design follows hashicorp/memberlist.

The host creates a :class:`Gossip` with a name, an address, a :class:`GossipConfig`, a seeded
``random.Random`` and its monotonic ``now`` in seconds; then feeds it packets (``receive``) and time
(``tick``), and sends what ``take_outbox`` returns.
"""

from .codec import DecodeError, DropReason, MessageType
from .config import GossipConfig, GossipConfigError
from .core import EventKind, Gossip, GossipEvent, GossipStats
from .state import Member, MemberState

__all__ = [
    "DecodeError",
    "DropReason",
    "EventKind",
    "Gossip",
    "GossipConfig",
    "GossipConfigError",
    "GossipEvent",
    "GossipStats",
    "Member",
    "MemberState",
    "MessageType",
]
