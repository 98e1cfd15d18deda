"""``coterie snapshot save|status`` and ``Client.snapshot``: a consistent, checksummed snapshot
streamed from one member (``Cluster.Snapshot``) into a file.

Unit part (no cluster): :class:`SnapshotFile` refuses a stream whose bytes do not match the announced
SHA-256 or size, or that ended without its final chunk, and leaves no file at the destination.
Real part (a 3-node cluster of processes): a snapshot saved after N puts, some of them with a lease,
verifies and decodes to those N keys and that lease; a snapshot asked of a follower right after a put
was acknowledged holds that put (the read barrier); a corrupted file fails ``snapshot status``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from coterie.client import Client, SnapshotError
from coterie.client.snapshot import DIGEST_BYTES, SnapshotFile
from coterie.node.cli import read_saved_snapshot
from coterie.node.statemachine import StateMachine
from coterie.v1 import cluster_pb2
from tests.proc_cluster import cluster

COTERIE = [sys.executable, "-m", "coterie.client.cli"]


def run(*args: str, endpoints: str = "127.0.0.1:1") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COTERIE, "--endpoints", endpoints, "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=90)


# ------------------------------------------------------------------------------------------ unit


def _chunks(blob: bytes, *, sha: bytes | None = None,
            size: int | None = None) -> list[cluster_pb2.SnapshotChunk]:
    return [cluster_pb2.SnapshotChunk(data=blob[:3]), cluster_pb2.SnapshotChunk(data=blob[3:]),
            cluster_pb2.SnapshotChunk(last=True, sha256=hashlib.sha256(blob).digest() if sha is None else sha,
                                      size=len(blob) if size is None else size, applied_index=7,
                                      revision=5, version=2)]


def test_snapshot_file_writes_image_and_trailer(tmp_path: Path) -> None:
    path = str(tmp_path / "s.snap")
    blob = b"0123456789"
    f = SnapshotFile(path)
    for c in _chunks(blob):
        f.add(c)
    info = f.finish()
    assert (info.size, info.revision, info.applied_index, info.version) == (10, 5, 7, 2)
    assert info.sha256 == hashlib.sha256(blob).hexdigest()
    assert Path(path).read_bytes() == blob + hashlib.sha256(blob).digest()
    assert not Path(path + ".part").exists()


@pytest.mark.parametrize("case", ["bad-sha", "bad-size", "no-final-chunk"])
def test_snapshot_file_refuses_a_bad_stream(tmp_path: Path, case: str) -> None:
    path = str(tmp_path / "s.snap")
    blob = b"0123456789"
    chunks = (_chunks(blob, sha=b"\0" * 32) if case == "bad-sha"
              else _chunks(blob, size=11) if case == "bad-size" else _chunks(blob)[:2])
    f = SnapshotFile(path)
    for c in chunks:
        f.add(c)
    with pytest.raises(SnapshotError):
        f.finish()
    f.discard()
    assert not Path(path).exists() and not Path(path + ".part").exists()


# ------------------------------------------------------------------------------------------ real


def test_snapshot_save_and_status_against_a_real_cluster(tmp_path: Path) -> None:
    n = 50
    with cluster(tmp_path / "c") as c:
        eps = ",".join(c.endpoints())
        leader = c.leader()
        follower = next(x for x in ("n1", "n2", "n3") if x != leader)
        with Client(eps) as cl:
            lease = cl.grant_lease(60.0)
            for i in range(n):
                cl.put(f"k/{i:03d}", f"v{i}", lease=lease if i % 5 == 0 else 0)

            # Through the CLI: prints size, revision, index and checksum.
            snap = tmp_path / "all.snap"
            r = run("snapshot", "save", str(snap), "-o", "json", endpoints=eps)
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)
            content = snap.read_bytes()
            image, trailer = content[:-DIGEST_BYTES], content[-DIGEST_BYTES:]
            assert hashlib.sha256(image).digest() == trailer
            assert out["sha256"] == trailer.hex() and out["size"] == len(image)
            assert not Path(str(snap) + ".part").exists()
            sm = StateMachine.from_snapshot(image)
            assert (sm.revision, sm.applied_index) == (out["revision"], out["applied_index"])
            assert len(sm.kv) == n
            assert [sm.kv.get(f"k/{i:03d}".encode()).value for i in range(n)] == [  # type: ignore[union-attr]
                f"v{i}".encode() for i in range(n)]
            assert sm.leases.get(lease.id) is not None
            assert sorted(sm.leases.keys_of(lease.id)) == [f"k/{i:03d}".encode() for i in range(0, n, 5)]

            r = run("snapshot", "status", str(snap), "-o", "json")
            assert r.returncode == 0, r.stderr
            st = json.loads(r.stdout)
            assert (st["keys"], st["leases"], st["revision"], st["sha256"]) == (
                n, 1, out["revision"], out["sha256"])

            # A corrupted file (one byte flipped in the image) is detected.
            bad = tmp_path / "bad.snap"
            flipped = bytearray(content)
            flipped[len(image) // 2] ^= 0xFF
            bad.write_bytes(bytes(flipped))
            r = run("snapshot", "status", str(bad))
            assert r.returncode == 1 and "checksum mismatch" in r.stderr, (r.stdout, r.stderr)
            with pytest.raises(ValueError, match="checksum mismatch"):
                read_saved_snapshot(str(bad))

            # Read barrier: a follower asked right after a put was acknowledged has it in its image.
            with Client(c.client[follower], discover=False) as fc:
                for i in range(10):
                    rev = cl.put(f"fresh/{i}", f"f{i}").revision
                    path = tmp_path / f"fresh{i}.snap"
                    info = fc.snapshot(str(path))
                    assert info.revision >= rev
                    img = path.read_bytes()[:-DIGEST_BYTES]
                    assert hashlib.sha256(img).hexdigest() == info.sha256
                    kv = StateMachine.from_snapshot(img).kv.get(f"fresh/{i}".encode())
                    assert kv is not None and kv.value == f"f{i}".encode()
