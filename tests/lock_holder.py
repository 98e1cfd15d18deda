"""A lock holder in a process of its own, for the crash and pause tests of ``test_client_locks``.

``python -m tests.lock_holder ENDPOINTS NAME TTL`` takes lock NAME, prints ``held <token>``, then
serves commands from stdin, one per line, answering one line each:

- ``write KEY VALUE``: a put fenced with the lock: ``ok <revision>`` or ``rejected <token> <holder>``
  (or ``error <message>``);
- ``alive``: ``alive <0|1> lost <0|1>``.
"""

from __future__ import annotations

import sys

from coterie.client import Client, CoterieError, FenceRejected


def main() -> None:
    endpoints, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with Client(endpoints, timeout=5.0) as c:
        lock = c.lock(name, ttl=ttl).acquire()
        print(f"held {lock.token}", flush=True)
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "write":
                try:
                    r = c.put(parts[1], parts[2], fence=lock)
                    print(f"ok {r.revision}", flush=True)
                except FenceRejected as exc:
                    print(f"rejected {exc.token} {exc.holder_token}", flush=True)
                except CoterieError as exc:
                    print(f"error {' '.join(str(exc).split())}", flush=True)
            elif parts[0] == "alive":
                print(f"alive {int(lock.alive)} lost {int(lock.lost.is_set())}", flush=True)


if __name__ == "__main__":
    main()
