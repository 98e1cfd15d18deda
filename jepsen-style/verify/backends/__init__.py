"""Backends: where the nodes run and how faults are made; see :mod:`.base`.

:data:`BACKENDS` is the one list of them (``--backend``): each entry is a
:class:`~coterie.verify.backends.base.BackendFactory`, ``(nodes, root, opts, *, build_image)`` ->
:class:`~coterie.verify.backends.base.Backend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .base import BackendFactory

BACKENDS: Registry[BackendFactory] = Registry("backend", __name__, {
    "local": (".local:LocalBackend.create", "loopback, faults via the nodes' fault-injection API"),
    "netns": (".netns:NetnsBackend.create", "one network namespace per node, iptables partitions (root)"),
    "compose": (".compose:ComposeBackend.create", "one container per node (docker compose, else "
                "podman-compose), iptables inside the containers"),
}, check=callable)
