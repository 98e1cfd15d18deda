"""A normal shutdown (SIGTERM to every node) logs one-line messages: no gRPC error objects spread over
several lines (``<AioRpcError ...\\n\\tstatus = ...>``)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc  # type: ignore[import-untyped]

from coterie.node.server.peer import describe_error
from tests.proc_cluster import NAMES, cluster


def test_describe_error_is_one_line() -> None:
    class Fake(grpc.RpcError):  # type: ignore[misc]
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "Cancelling\n\tall calls"

    assert describe_error(Fake()) == "UNAVAILABLE: Cancelling all calls"
    assert describe_error(TimeoutError("x\ny")) == "TimeoutError: x y"


def test_sigterm_shutdown_logs_single_line_messages(tmp_path: Path) -> None:
    with cluster(tmp_path, extra={"*": ["--log-level", "info"]}) as c:
        c.quiet()
    stopped = 0
    for n in NAMES:
        for line in (tmp_path / f"{n}.log").read_text().splitlines():
            rec = json.loads(line)  # every line one JSON object
            assert "\n" not in rec["msg"] and "AioRpcError" not in rec["msg"], rec
            assert rec["level"] not in ("ERROR", "CRITICAL"), rec
            stopped += rec["msg"] == "node stopped"
    assert stopped == len(NAMES)
