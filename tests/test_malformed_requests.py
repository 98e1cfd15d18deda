"""Malformed requests against real nodes: a body that is not protobuf answers INVALID_ARGUMENT with a
plain message (not UNKNOWN with a Python exception name), on unary methods and on the Watch stream, and
the node keeps serving; ``member add`` without a name is refused with INVALID_ARGUMENT naming the
field."""

from __future__ import annotations

from collections.abc import Iterator

import grpc  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from coterie.client import Client, InvalidArgument
from coterie.client.cli import main
from tests.proc_cluster import ProcCluster, cluster

GARBAGE = [b"\xff" * 8, b"\x0a\x05ab", b"\x08"]
UNARY = ["/coterie.v1.KV/Put", "/coterie.v1.KV/Range", "/coterie.v1.KV/Txn", "/coterie.v1.Session/Open",
         "/coterie.v1.Cluster/Status", "/coterie.v1.Cluster/MemberAdd"]


@pytest.fixture(scope="module")
def c3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("malformed")) as c:
        yield c


def _plain(details: str) -> None:
    assert details.startswith("malformed request: the body is not a valid coterie.v1."), details
    for word in ("Error", "Exception", "Traceback", "deserializ"):
        assert word not in details, details


@pytest.mark.parametrize("method", UNARY)
def test_garbage_body_is_invalid_argument(c3: ProcCluster, method: str) -> None:
    with grpc.insecure_channel(c3.client[c3.leader()]) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        for body in GARBAGE:
            with pytest.raises(grpc.RpcError) as ei:
                call(body, timeout=5)
            err = ei.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (body, err.code(), err.details())
            _plain(err.details())
        # The node still serves well-formed calls on the same channel.
        if method == "/coterie.v1.Cluster/Status":
            assert call(b"", timeout=5) is not None


def test_garbage_on_the_watch_stream_is_invalid_argument(c3: ProcCluster) -> None:
    with grpc.insecure_channel(c3.client["n1"]) as ch:
        call = ch.stream_stream("/coterie.v1.KV/Watch", request_serializer=None, response_deserializer=None)
        responses = call(iter([b"\xff" * 8]), timeout=5)
        with pytest.raises(grpc.RpcError) as ei:
            list(responses)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (ei.value.code(), ei.value.details())
        _plain(ei.value.details())


@pytest.mark.parametrize("name", ["", "   "])
def test_member_add_without_a_name_is_refused(c3: ProcCluster, name: str) -> None:
    with Client(c3.endpoints(), timeout=10) as c:
        with pytest.raises(InvalidArgument) as ei:
            c.member_add("127.0.0.1:1", name=name)
        assert ei.value.code == "INVALID_ARGUMENT" and "name must not be empty" in ei.value.message
        assert [m.name for m in c.member_list()] == ["n1", "n2", "n3"]
    r = CliRunner().invoke(main, ["--endpoints", ",".join(c3.endpoints()), "member", "add", name,
                                  "--peer-addr", "127.0.0.1:1"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "name must not be empty" in r.stderr, r.output


def test_services_of_other_modules_get_the_same_treatment(c3: ProcCluster) -> None:
    """FaultInjection is registered by another module (fault_admin.py) than KV/Session/Cluster."""
    with grpc.insecure_channel(c3.client["n2"]) as ch:
        call = ch.unary_unary("/coterie.v1.FaultInjection/SetFaults", request_serializer=None,
                              response_deserializer=None)
        with pytest.raises(grpc.RpcError) as ei:
            call(b"\xff" * 8, timeout=5)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (ei.value.code(), ei.value.details())
        _plain(ei.value.details())
