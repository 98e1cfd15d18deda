"""The CLI with binary data and etcdctl's everyday options, against three real nodes: values from
stdin (any bytes, larger than an argument may be), keys that are not UTF-8, escaped tables,
unambiguous JSON, ``get --limit --keys-only --sort --order``, ``put --prev-kv``, ``txn`` (stdin and
interactive) and ``--version``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from coterie.client import Client
from coterie.client.cli import main
from tests.proc_cluster import cluster


@pytest.fixture(scope="module")
def eps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with cluster(tmp_path_factory.mktemp("clibin")) as c:
        yield ",".join(c.endpoints())


def run(eps: str, *args: str, input: bytes | None = None) -> Result:
    r = CliRunner().invoke(main, ["--endpoints", eps, *args], input=input)
    return r


def test_value_from_stdin_any_bytes_and_large(eps: str) -> None:
    big = bytes(range(256)) * 2048  # 512 KiB, every byte value: more than one argv string may hold
    r = run(eps, "put", "bin/big", "-", input=big)
    assert r.exit_code == 0 and r.stdout.startswith("OK revision"), r.output
    r = run(eps, "put", "bin/nov", input=b"\xff\x00no value argument")
    assert r.exit_code == 0, r.output
    with Client(eps) as c:
        got = c.get("bin/big")
        assert got is not None and got.value == big
        got = c.get("bin/nov")
        assert got is not None and got.value == b"\xff\x00no value argument"
    r = run(eps, "-o", "json", "get", "bin/big")
    (row,) = json.loads(r.stdout)
    assert "value" not in row and base64.b64decode(row["value_base64"]) == big


def test_binary_key_and_its_text_spelling_differ_in_json_and_table(eps: str) -> None:
    # Python hands a non-UTF-8 argv byte to the program as a lone surrogate (surrogateescape).
    assert run(eps, "put", "bk/\udcff", "binary").exit_code == 0
    assert run(eps, "put", "bk/\\xff", "text").exit_code == 0
    rows = json.loads(run(eps, "-o", "json", "get", "bk/", "--prefix").stdout)
    assert {"key_base64": base64.b64encode(b"bk/\xff").decode(), "value": "binary"}.items() <= rows[1].items()
    assert rows[0]["key"] == "bk/\\xff" and "key_base64" not in rows[0]
    rows = json.loads(run(eps, "--base64", "-o", "json", "get", "bk/", "--prefix").stdout)
    assert [base64.b64decode(r["key_base64"]) for r in rows] == [b"bk/\\xff", b"bk/\xff"]
    assert all("key" not in r and "value_base64" in r for r in rows)
    table = run(eps, "get", "bk/", "--prefix").stdout
    assert "bk/\\\\xff  text" in table and "bk/\\xff   binary" in table, table


def test_table_escapes_control_bytes(eps: str) -> None:
    assert run(eps, "put", "esc/k", "-", input=b"red\x1b[31m\nline\ttab\x07").exit_code == 0
    out = run(eps, "get", "esc/k").stdout
    assert "\x1b" not in out and "\x07" not in out and "\t" not in out
    assert "red\\x1b[31m\\nline\\ttab\\x07" in out, out
    row = json.loads(run(eps, "-o", "json", "get", "esc/k").stdout)[0]
    assert row["value"] == "red\x1b[31m\nline\ttab\x07"


def test_get_limit_keys_only_sort(eps: str) -> None:
    for k, v in [("s/b", "2"), ("s/a", "3"), ("s/c", "1")]:
        assert run(eps, "put", k, v).exit_code == 0
    assert run(eps, "put", "s/a", "33").exit_code == 0  # s/a: version 2, the latest mod revision

    def keys(*args: str) -> list[str]:
        r = run(eps, "-o", "json", "get", "s/", "--prefix", *args)
        assert r.exit_code == 0, r.output
        return [row["key"] for row in json.loads(r.stdout)]

    assert keys() == ["s/a", "s/b", "s/c"]
    assert keys("--limit", "2") == ["s/a", "s/b"]
    assert keys("--sort", "key", "--order", "descend", "--limit", "2") == ["s/c", "s/b"]
    assert keys("--sort", "value") == ["s/c", "s/b", "s/a"]
    assert keys("--sort", "modify", "--order", "descend", "--limit", "1") == ["s/a"]
    assert keys("--sort", "version", "--order", "descend", "--limit", "1") == ["s/a"]
    rows = json.loads(run(eps, "-o", "json", "get", "s/", "--prefix", "--keys-only").stdout)
    assert [r["value"] for r in rows] == ["", "", ""]
    table = run(eps, "get", "s/", "--prefix", "--keys-only").stdout
    assert table.splitlines()[0].split() == ["KEY", "MOD", "REV", "VERSION"] and "33" not in table


def test_put_prev_kv_and_lease_option(eps: str) -> None:
    assert run(eps, "put", "pk/a", "old").exit_code == 0
    r = run(eps, "put", "pk/a", "new", "--prev-kv")
    assert r.exit_code == 0 and "old" in r.stdout.splitlines()[-1], r.output
    r = run(eps, "-o", "json", "put", "pk/a", "newer")
    assert json.loads(r.stdout)["prev"]["value"] == "new"
    assert run(eps, "put", "pk/a", "v", "--lease", "-1").exit_code == 2


TXN = b'''val("tx/a") = "1"
mod("tx/a") > "0"

put tx/a 2
put "tx/b c" "two words"
get tx/ --prefix

put tx/a failed
'''


def test_txn_from_stdin_both_branches(eps: str) -> None:
    r = run(eps, "txn", input=TXN)
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "FAILURE", r.output  # tx/a absent
    with Client(eps) as c:
        got = c.get("tx/a")
        assert got is not None and got.value == b"failed"
        c.put("tx/a", "1")
    r = run(eps, "-o", "json", "txn", input=TXN)
    out = json.loads(r.stdout)
    assert out["succeeded"] is True and len(out["results"]) == 3, r.output
    kvs = out["results"][2]["get"]["kvs"]
    assert [(kv["key"], kv["value"]) for kv in kvs] == [("tx/a", "2"), ("tx/b c", "two words")]


def test_txn_interactive_prompts_and_bad_input(eps: str) -> None:
    r = run(eps, "txn", "-i", input=b'ver("tx/none") = 0\n\nput tx/i yes\n\n')
    assert r.exit_code == 0 and r.stdout.startswith("SUCCESS"), r.output
    assert "compares:" in r.stderr and "success requests (get, put, del):" in r.stderr
    assert "failure requests (get, put, del):" in r.stderr
    r = run(eps, "txn", input=b'value("k") ~ "1"\n')
    assert r.exit_code == 1 and r.stderr.startswith("error: bad compare"), r.output
    r = run(eps, "txn", input=b'\nfrobnicate k\n')
    assert r.exit_code == 1 and r.stderr.startswith("error: bad request"), r.output


def test_version() -> None:
    from importlib.metadata import version

    r = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"coterie {version('coterie')}", r


def test_non_utf8_argv_in_a_real_process(eps: str, tmp_path: object) -> None:
    """Through a real argv (bytes, not str): no codec error."""
    import os

    r = subprocess.run([os.fsencode(sys.executable), b"-m", b"coterie.client.cli", b"--endpoints",
                        eps.encode(), b"put", b"argv/\xfe", b"\xfd"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with Client(eps) as c:
        got = c.get(b"argv/\xfe")
        assert got is not None and got.value == b"\xfd"


