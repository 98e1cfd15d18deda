"""The Jepsen-style suite's registries (backends, nemeses, workloads): every entry loads and has the
kind's factory shape, unknown names fail with the kind and the choices, and the CLI, the runner and
``scripts/jepsen-all`` take their names from the registries (no cluster is started)."""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from coterie.verify.backends import BACKENDS
from coterie.verify.backends.base import Backend, NodeOptions
from coterie.verify.cli import verify
from coterie.verify.nemesis import NEMESES
from coterie.verify.nemesis.base import Fault, make_faults
from coterie.verify.nemesis.links import LinkFault
from coterie.verify.nemesis.partition import PARTITION_SHAPES, PartitionFault
from coterie.verify.registry import Registry
from coterie.verify.runner import RunConfig, make_backend
from coterie.verify.workloads import WORKLOADS
from coterie.verify.workloads.base import Workload

REPO = Path(__file__).resolve().parent.parent


def test_the_names_are_the_ones_the_suite_always_had() -> None:
    assert BACKENDS.names() == ("local", "netns", "compose")
    assert NEMESES.names() == ("partition", "partition-halves", "partition-leader", "partition-ring",
                               "partition-oneway", "kill", "pause", "slow", "lossy", "member", "clock",
                               "clock-broken", "clock-jump", "none")
    assert WORKLOADS.names() == ("register", "set", "watch", "lock", "lease")
    for reg in (BACKENDS, NEMESES, WORKLOADS):
        for e in reg.entries():
            assert e.help and "\n" not in e.help and ";" not in e.help, e


@pytest.mark.parametrize("name", WORKLOADS.names())
def test_every_workload_is_a_workload_class_of_its_name(name: str) -> None:
    cls = WORKLOADS.load(name)
    assert isinstance(cls, type) and issubclass(cls, Workload), cls
    assert not inspect.isabstract(cls), cls
    assert cls.name == name


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_backend_factory_has_the_uniform_signature(name: str, tmp_path: Path) -> None:
    factory = BACKENDS.load(name)
    params = inspect.signature(factory).parameters
    assert list(params)[:3] == ["nodes", "root", "opts"], params
    assert params["build_image"].kind is inspect.Parameter.KEYWORD_ONLY, params
    # Constructing a backend has no side effect (setup() is what touches the system).
    b = factory(3, tmp_path, NodeOptions(tick_ms=20), build_image=True)
    assert isinstance(b, Backend) and b.name == name
    assert b.n == 3 and b.root == tmp_path and b.options.tick_ms == 20
    assert not any(tmp_path.iterdir())
    if name == "compose":
        assert b.build is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", BACKENDS.names())
def test_the_runner_builds_the_registered_backend(name: str, tmp_path: Path) -> None:
    b = make_backend(RunConfig(backend=name, nodes=5, tick_ms=30, build_image=False), tmp_path)
    assert b.name == name and b.n == 5 and b.options.tick_ms == 30


class _NoBackend:
    """Fault constructors only keep the backend; nothing may be called on it here."""

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"a fault constructor used backend.{attr}")


@pytest.mark.parametrize("name", NEMESES.names())
def test_every_nemesis_factory_makes_its_fault(name: str) -> None:
    factory = NEMESES.load(name)
    assert len(inspect.signature(factory).parameters) == 2
    backend: Any = _NoBackend()
    rng = random.Random(0)
    fault = factory(backend, rng)
    if name == "none":
        assert fault is None
        return
    assert isinstance(fault, Fault), fault
    assert fault.b is backend and fault.rng is rng
    assert fault.name == name.split("-")[0]
    if name.startswith("partition"):
        assert isinstance(fault, PartitionFault)
        shape = name.removeprefix("partition").removeprefix("-")
        assert fault.shapes == ([shape] if shape else list(PARTITION_SHAPES))
    if name in ("slow", "lossy"):
        assert isinstance(fault, LinkFault)


def test_one_partition_entry_per_shape() -> None:
    assert {n for n in NEMESES.names() if n.startswith("partition-")} == \
        {f"partition-{s}" for s in PARTITION_SHAPES}


def test_make_faults_skips_none_and_blanks_and_shares_the_rng() -> None:
    rng = random.Random(1)
    faults = make_faults(["partition", " kill ", "", "none", "slow"], _NoBackend(), rng)  # type: ignore[arg-type]
    assert [f.name for f in faults] == ["partition", "kill", "slow"]
    assert all(f.rng is rng for f in faults)
    assert make_faults(["none"], _NoBackend(), rng) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("reg", "kind"), [(BACKENDS, "backend"), (NEMESES, "nemesis"),
                                           (WORKLOADS, "workload")])
def test_unknown_names_say_the_kind_and_the_choices(reg: Registry[Any], kind: str) -> None:
    msg = f"unknown {kind} 'bogus'; choose from {', '.join(reg.names())}"
    for call in (reg.load, reg.validate, reg.help):
        with pytest.raises(ValueError) as exc:
            call("bogus")
        assert str(exc.value) == msg
    assert "bogus" not in reg


def test_unknown_names_in_the_runner_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'ssh'; choose from local, netns, compose"):
        make_backend(RunConfig(backend="ssh"), tmp_path)
    with pytest.raises(ValueError, match=r"unknown nemesis 'flood'; choose from partition, "):
        make_faults(["kill", "flood"], _NoBackend(), random.Random(0))  # type: ignore[arg-type]


def test_registry_targets_load_lazily_and_are_checked() -> None:
    reg: Registry[Any] = Registry("thing", "coterie.verify", {
        "ok": (".registry:Registry.describe", "a dotted attribute"),
        "absolute": ("json:dumps", "an absolute module"),
        "wrong": ("json:JSONDecodeError", "rejected by the check"),
    }, check=lambda obj: obj is not __import__("json").JSONDecodeError)
    assert reg.load("ok") is Registry.describe
    assert reg.load("absolute") is __import__("json").dumps
    with pytest.raises(TypeError, match="thing 'wrong': json:JSONDecodeError is not a thing"):
        reg.load("wrong")
    assert reg.describe() == ("ok: a dotted attribute; absolute: an absolute module; "
                              "wrong: rejected by the check")
    assert list(reg) == ["ok", "absolute", "wrong"] and len(reg) == 3
    assert reg.help("ok") == "a dotted attribute"
    with pytest.raises(ValueError, match="target must be 'module:attribute'"):
        Registry("thing", "x", {"bad": ("no-colon", "")})


# ------------------------------------------------------------------------------ the CLI


def _option(name: str) -> click.Option:
    for p in verify.params:
        if isinstance(p, click.Option) and p.name == name:
            return p
    raise AssertionError(name)


def test_cli_choices_and_help_come_from_the_registries() -> None:
    wl, be, nem = _option("workload"), _option("backend"), _option("nemesis")
    assert isinstance(wl.type, click.Choice) and tuple(wl.type.choices) == WORKLOADS.names()
    assert isinstance(be.type, click.Choice) and tuple(be.type.choices) == BACKENDS.names()
    assert (wl.default, be.default, nem.default) == ("register", "local", "partition")
    for opt, reg in ((wl, WORKLOADS), (be, BACKENDS), (nem, NEMESES)):
        assert opt.help is not None and reg.describe() in opt.help


def test_cli_refuses_an_unknown_nemesis_with_the_choices() -> None:
    res = CliRunner().invoke(verify, ["--nemesis", "partition,bogus"])
    assert res.exit_code == 2
    assert (f"Invalid value for --nemesis: unknown nemesis 'bogus'; choose from "
            f"{', '.join(NEMESES.names())}") in res.output
    res = CliRunner().invoke(verify, ["--workload", "bogus"])
    assert res.exit_code == 2
    assert "'bogus' is not one of 'register', 'set', 'watch', 'lock', 'lease'" in res.output


def test_importing_the_cli_imports_no_entry() -> None:
    probe = ("import json, sys, coterie.verify.cli; print(json.dumps(sorted(m for m in sys.modules "
             "if m.startswith(('coterie.verify.', 'grpc', 'matplotlib')))))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == [f"coterie.verify.{m}" for m in
                                      ("backends", "cli", "nemesis", "registry", "workloads")]


def test_jepsen_all_takes_its_names_from_the_registries() -> None:
    script = str(REPO / "scripts" / "jepsen-all")
    out = subprocess.run([sys.executable, script, "--help"], check=True, capture_output=True, text=True)
    assert "{local,netns,compose}" in out.stdout
    assert "from: register, set, watch, lock, lease" in " ".join(out.stdout.split())  # help wraps
    bad = subprocess.run([sys.executable, script, "--workloads", "register,bogus"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert "unknown workload 'bogus'; choose from register, set, watch, lock, lease" in bad.stderr
    bad = subprocess.run([sys.executable, script, "--nemeses", "kill,partition+flood"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown nemesis 'flood'; choose from partition," in bad.stderr
