"""Checks a client makes before it sends anything: endpoints (host, port range, IPv6 in brackets) and
the timeout are validated by both constructors and by the CLI, and a closed client raises
:class:`ClientClosed`. No cluster needed: each failure must come at once, so every test is bounded by
a wall-clock assertion too."""

from __future__ import annotations

import asyncio
import time

import pytest
from click.testing import CliRunner

from coterie.client import (
    AsyncClient,
    Client,
    ClientClosed,
    CoterieError,
    InvalidArgument,
    InvalidEndpoint,
)
from coterie.client._call import DEFAULT_TIMEOUT
from coterie.client._router import parse_endpoints
from coterie.client.cli import main

BAD = {
    "localhost": "no port",
    "127.0.0.1:99999": "port 99999 is out of range",
    "127.0.0.1:0": "port 0 is out of range",
    "127.0.0.1:notaport": "port 'notaport' is not a number",
    "127.0.0.1:": "no port",
    ":7001": "no host",
    "::1:7001": "IPv6 address must be in brackets",
    "[::1:7001": "no ']'",
    "[nothex]:7001": "is not an IPv6 address",
    "[::1]": "no port",
    "bad host:7001": "is not a host name or address",
}


@pytest.mark.parametrize("endpoint", sorted(BAD))
def test_bad_endpoint_raises_at_once_from_both_constructors(endpoint: str) -> None:
    for make in (lambda e: Client(e, timeout=30), lambda e: AsyncClient(e, timeout=30)):
        t0 = time.monotonic()
        with pytest.raises(InvalidEndpoint) as ei:
            make(f"127.0.0.1:7001,{endpoint}")
        assert time.monotonic() - t0 < 1.0
        assert isinstance(ei.value, InvalidArgument) and isinstance(ei.value, CoterieError)
        assert ei.value.bad == endpoint
        assert repr(endpoint) in str(ei.value) and BAD[endpoint] in str(ei.value)
        assert not ei.value.retriable and "[retrying will not help]" in str(ei.value)


def test_good_endpoints_are_normalised() -> None:
    assert parse_endpoints(" http://a:1, b:2 ,a:1,") == ["a:1", "b:2"]
    assert parse_endpoints(["[::1]:7001", "node-1.example:007", "10.0.0.1:65535"]) == [
        "[::1]:7001", "node-1.example:7", "10.0.0.1:65535"]
    with pytest.raises(InvalidEndpoint, match="no endpoint given"):
        parse_endpoints(" , ")


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_bad_timeout_is_refused_by_the_constructors(timeout: float) -> None:
    with pytest.raises(InvalidArgument, match="timeout must be a positive number"):
        AsyncClient("127.0.0.1:7001", timeout=timeout)
    with pytest.raises(InvalidArgument, match="timeout must be a positive number"):
        Client("127.0.0.1:7001", timeout=timeout)


def test_the_cli_and_the_client_share_one_default_timeout() -> None:
    opt = next(p for p in main.params if p.name == "timeout")
    assert opt.default == DEFAULT_TIMEOUT
    assert AsyncClient("127.0.0.1:7001").timeout == DEFAULT_TIMEOUT
    with Client("127.0.0.1:7001") as c:
        assert c.timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize("args", [["get", "k"], ["put", "k", "v"], ["status"], ["member", "list"]])
def test_cli_bad_endpoint_is_one_error_line(args: list[str]) -> None:
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["--endpoints", "127.0.0.1:99999", *args])
    assert time.monotonic() - t0 < 2.0
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid endpoint '127.0.0.1:99999'"), r.stderr


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_cli_refuses_a_timeout_that_is_not_positive(timeout: str) -> None:
    r = CliRunner().invoke(main, ["--timeout", timeout, "get", "k"])
    assert r.exit_code == 2 and "--timeout" in r.stderr, r.output


def test_closed_sync_client_raises_client_closed() -> None:
    c = Client("127.0.0.1:7001", timeout=5)
    c.close()
    for call in (lambda: c.get("k"), lambda: c.put("k", "v"), lambda: c.watch("k")):
        with pytest.raises(ClientClosed) as ei:
            call()
        assert type(ei.value) is ClientClosed and "closed" in str(ei.value)
        assert "[retrying will not help]" in str(ei.value)


def test_closed_async_client_raises_client_closed() -> None:
    async def run() -> None:
        c = AsyncClient("127.0.0.1:7001", timeout=5)
        await c.close()
        with pytest.raises(ClientClosed):
            await c.get("k")
        with pytest.raises(ClientClosed):
            await c.put("k", "v")

    asyncio.run(asyncio.wait_for(run(), 10))
