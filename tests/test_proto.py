"""The gRPC schema: committed stubs match the .proto files, and the wire enums match the core's."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from coterie.node.gossip import MemberState
from coterie.node.raft.progress import ProgressState
from coterie.node.raft.types import ConfChangeType, EntryType, Message, MessageType, Role
from coterie.node.statemachine.errors import KVError
from coterie.node.statemachine.types import CompareResult, CompareTarget, EventType
from coterie.v1 import cluster_pb2, kv_pb2, raft_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = PROTO_DIR / "coterie" / "v1"


def _generated(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*_pb2*.py*"))}


def test_committed_stubs_match_the_proto_files(tmp_path: Path) -> None:
    """The same protoc command as scripts/gen-proto, into a temp dir, gives byte-identical files."""
    protos = sorted(str(p.relative_to(ROOT)) for p in GEN_DIR.glob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fresh = _generated(tmp_path / "coterie" / "v1")
    committed = _generated(GEN_DIR)
    assert sorted(fresh) == sorted(committed), "generated file set differs: run scripts/gen-proto"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated stubs {stale}: run scripts/gen-proto"


def test_gen_proto_script_uses_the_same_command() -> None:
    script = (ROOT / "scripts" / "gen-proto").read_text()
    assert "-m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto" in script
    assert "proto/coterie/v1/*.proto" in script


def _pb_values(enum: Any, prefix: str) -> dict[str, int]:
    values: dict[str, int] = dict(enum.items())
    assert all(name.startswith(prefix) for name in values), values
    return {name.removeprefix(prefix): v for name, v in values.items()}


@pytest.mark.parametrize(
    ("py_enum", "pb_enum", "prefix"),
    [
        (MessageType, raft_pb2.MessageType, "MSG_"),
        (EntryType, raft_pb2.EntryType, "ENTRY_"),
        (ConfChangeType, raft_pb2.ConfChangeType, "CONF_CHANGE_"),
        (Role, cluster_pb2.Role, "ROLE_"),
        (ProgressState, cluster_pb2.ProgressState, "PROGRESS_"),
        (EventType, kv_pb2.Event.EventType, ""),
        (CompareResult, kv_pb2.Compare.CompareResult, ""),
        (MemberState, cluster_pb2.GossipState, "GOSSIP_"),
    ],
)
def test_enum_numbers_match(py_enum: type[IntEnum], pb_enum: Any, prefix: str) -> None:
    """Every value of the core's enum has the same name and number in the proto enum, and back."""
    assert _pb_values(pb_enum, prefix) == {m.name: int(m) for m in py_enum}


def test_compare_target_numbers_match() -> None:
    # etcd's names (CREATE, MOD) differ from the state machine's (CREATE_REVISION, MOD_REVISION).
    pb = _pb_values(kv_pb2.Compare.CompareTarget, "")
    py = {m.name.removesuffix("_REVISION"): int(m) for m in CompareTarget}
    assert pb == py


def test_raft_message_has_every_field_of_message() -> None:
    """A field added to ``Message`` needs a field in ``RaftMessage`` (and in the codec)."""
    py = {f.name for f in dataclasses.fields(Message)} - {"frm"} | {"from_id"}
    pb = {f.name for f in raft_pb2.RaftMessage.DESCRIPTOR.fields}
    assert py == pb


def _kv_error_classes() -> list[type[KVError]]:
    """KVError and every subclass of it, however deep."""
    out: list[type[KVError]] = [KVError]
    for cls in out:
        out.extend(c for c in cls.__subclasses__() if c not in out)
    return out


def _error_code_name(cls: type[KVError]) -> str:
    """``LimitExceeded`` -> ``ERROR_CODE_LIMIT_EXCEEDED``; KVError itself is UNSPECIFIED."""
    if cls is KVError:
        return "ERROR_CODE_UNSPECIFIED"
    return "ERROR_CODE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper()


def test_each_state_machine_error_has_its_wire_error_code() -> None:
    """Every state machine error class's ``code`` is the kv.proto ErrorCode value of its name."""
    for cls in _kv_error_classes():
        name = _error_code_name(cls)
        assert name in kv_pb2.ErrorCode.DESCRIPTOR.values_by_name, f"{cls.__name__}: kv.proto has no {name}"
        assert kv_pb2.ErrorCode.Value(name) == cls.code, f"{cls.__name__}.code != {name}"


def test_each_wire_error_code_has_a_state_machine_error() -> None:
    codes = {cls.code: cls for cls in _kv_error_classes()}
    assert len(codes) == len(_kv_error_classes()), "two error classes share a code"
    for name, value in kv_pb2.ErrorCode.items():
        assert value in codes, f"kv.proto's {name} = {value} has no state machine error class"
        assert _error_code_name(codes[value]) == name
