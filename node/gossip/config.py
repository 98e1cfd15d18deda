"""Configuration of one gossip core. Every field states its unit, default and trade-off.

Time is in **seconds as floats**: the host passes ``now`` (a monotonic clock reading, in seconds) into
every call of :class:`coterie.node.gossip.Gossip`, and every duration below is in the same unit. The
core never reads a clock itself.

References: SWIM = Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
Membership Protocol" (DSN 2002); Lifeguard = Dadgar, Phillips, Currey, "Lifeguard: Local Health
Awareness for More Accurate Failure Detection" (2018). The defaults of :meth:`GossipConfig.lan` are
hashicorp/memberlist's ``DefaultLANConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


class GossipConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the limit."""


@dataclass(frozen=True, slots=True)
class GossipConfig:
    probe_interval: float = 1.0
    """Seconds between failure-detector probes (SWIM 3.1's protocol period T'). Each period one member is
    pinged, chosen round-robin over a shuffled list (SWIM 4.3), so a failed member is first probed within
    ``n * probe_interval`` at worst and ``probe_interval`` on average per observer. Smaller: faster
    detection, more packets (one ping and one ack per member per period). Scaled by the local health
    score (:attr:`awareness_max_multiplier`)."""

    probe_timeout: float = 0.5
    """Seconds to wait for a direct ack before asking :attr:`indirect_checks` members to probe the target
    (SWIM 3.1's ping-req). Should be about the 99th percentile round trip; must be below
    :attr:`probe_interval` (the indirect probes need the rest of the period). Smaller: indirect probes
    sooner, more of them on a slow network. Also the time a ping-req helper waits before sending a nack
    (Lifeguard 4.1)."""

    indirect_checks: int = 3
    """k, the number of members asked to ping a target that missed its direct ack (SWIM 3.1). Larger:
    fewer false suspicions when the path between prober and target is lossy, more packets
    (``2k`` extra per failed probe)."""

    retransmit_mult: int = 4
    """Each broadcast (alive/suspect/dead) is piggybacked ``retransmit_mult * ceil(log10(n + 1))`` times,
    n the number of members (SWIM 4.1's lambda * log n). Larger: higher probability that every member
    hears an update under loss, more bytes per update."""

    suspicion_mult: int = 4
    """Multiplier of the minimum suspicion timeout: ``min = suspicion_mult * max(1, log10(max(1, n))) *
    probe_interval`` seconds (memberlist ``suspicionTimeout``; SWIM 4.2's suspicion time-out grows as
    O(log n)). Also fixes the number of independent confirmations Lifeguard waits for:
    ``k = suspicion_mult - 2`` (0 when the cluster has fewer than ``k + 2`` members). Larger: more time
    for a suspected member to refute (fewer false positives), slower dead declarations."""

    suspicion_max_timeout_mult: int = 6
    """Lifeguard 4.2 (LHA-Suspicion): a suspicion starts at ``max = suspicion_max_timeout_mult * min`` and
    shrinks towards ``min`` as confirmations arrive:
    ``timeout = max(min, max - (max - min) * log(c + 1) / log(k + 1))`` after c confirmations.
    Larger: a lone suspicion (likely the suspecter's own fault) takes longer to become a death; a
    confirmed one is unaffected. Ignored (``max = min``) when :attr:`lifeguard` is off."""

    awareness_max_multiplier: int = 8
    """Lifeguard 4.1 (LHA-Probe): the local health score runs over ``0 .. awareness_max_multiplier - 1``
    and scales the probe interval and probe timeout by ``score + 1``. A member that misses acks and nacks
    (a sign that it, not its peers, is slow) probes less often and waits longer before suspecting.
    Larger: a sick member backs off further, but detection from it slows more. Must be >= 1."""

    push_pull_interval: float = 30.0
    """Seconds between full-state exchanges with one random member (anti-entropy; memberlist push-pull).
    Scaled up above 32 members: ``interval * (ceil(log2(n) - log2(32)) + 1)``. 0 disables periodic
    exchanges (join still uses one). Smaller: faster repair after partitions, O(n) bytes each time."""

    gossip_interval: float = 0.2
    """Seconds between gossip rounds that send pending broadcasts to :attr:`gossip_nodes` random members
    (in addition to piggybacking them on pings and acks, SWIM 4.1). Smaller: faster dissemination, more
    packets. 0 disables the extra rounds (piggybacking only, as in the SWIM paper)."""

    gossip_nodes: int = 3
    """Random members sent pending broadcasts each :attr:`gossip_interval` (the fan-out)."""

    gossip_to_the_dead_time: float = 30.0
    """Seconds a dead or left member still receives gossip (so a wrongly declared member learns it and
    refutes) and stays in the member table; after that it is removed (at the next probe-list
    reshuffle). Larger: more chance to refute, and the table remembers departures longer."""

    max_packet_size: int = 1400
    """Bytes in one datagram the core produces, version byte included (every message but push-pull).
    Piggybacked broadcasts fill the room left by the ping/ack. 1400 stays under a 1500-byte Ethernet
    MTU; smaller packets carry fewer broadcasts per round. Received datagrams above
    :attr:`max_push_pull_size` are dropped, and those above this size unless they are push-pull."""

    max_push_pull_size: int = 4 << 20
    """Bytes of one push-pull message, sent and accepted. A push-pull carries the whole member table
    (about 40 bytes per member plus meta) and is the only message that may exceed
    :attr:`max_packet_size`: the host must carry packets longer than ``max_packet_size`` over a stream
    (TCP) or drop them. A table that does not fit is truncated (dead/left members first)."""

    lifeguard: bool = True
    """Enable the Lifeguard extensions: local health awareness (:attr:`awareness_max_multiplier`),
    dynamic suspicion timeouts (:attr:`suspicion_max_timeout_mult`), nacks from ping-req helpers, and
    the buddy system (a ping to a suspect member carries the suspicion, so it refutes at once). Off:
    plain SWIM with a fixed suspicion timeout of ``min``, kept for comparisons."""

    def validate(self) -> None:
        """Raise :class:`GossipConfigError` naming the first field out of range."""
        for name in ("probe_interval", "probe_timeout"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise GossipConfigError(f"{name} must be a finite number of seconds > 0, got {v}")
        if self.probe_timeout >= self.probe_interval:
            raise GossipConfigError(
                f"probe_timeout ({self.probe_timeout}) must be less than probe_interval "
                f"({self.probe_interval})")
        for name in ("push_pull_interval", "gossip_interval", "gossip_to_the_dead_time"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise GossipConfigError(f"{name} must be a finite number of seconds >= 0, got {v}")
        if self.indirect_checks < 0:
            raise GossipConfigError(f"indirect_checks must be >= 0, got {self.indirect_checks}")
        if self.gossip_nodes < 0:
            raise GossipConfigError(f"gossip_nodes must be >= 0, got {self.gossip_nodes}")
        for name in ("retransmit_mult", "suspicion_mult", "suspicion_max_timeout_mult",
                     "awareness_max_multiplier"):
            if getattr(self, name) < 1:
                raise GossipConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_packet_size < 512:
            raise GossipConfigError(f"max_packet_size must be >= 512 bytes, got {self.max_packet_size}")
        if self.max_push_pull_size < self.max_packet_size:
            raise GossipConfigError(
                f"max_push_pull_size ({self.max_push_pull_size}) must be >= max_packet_size "
                f"({self.max_packet_size})")

    @classmethod
    def lan(cls, **overrides: object) -> GossipConfig:
        """memberlist's ``DefaultLANConfig``: one probe a second, 500 ms probe timeout, 3 indirect checks.
        Keyword arguments override fields; the result is validated."""
        cfg = replace(cls(), **overrides)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    @classmethod
    def local(cls, **overrides: object) -> GossipConfig:
        """memberlist's ``DefaultLocalConfig``, for loopback or one rack: 200 ms probe timeout, one
        indirect check, fewer retransmits, a shorter suspicion and push-pull period."""
        local: dict[str, object] = dict(
            probe_timeout=0.2, indirect_checks=1, retransmit_mult=2, suspicion_mult=3,
            push_pull_interval=15.0, gossip_interval=0.1, gossip_to_the_dead_time=15.0)
        cfg = replace(cls(), **{**local, **overrides})  # type: ignore[arg-type]
        cfg.validate()
        return cfg
