"""The native builds' cache and failure modes (bench/peers/pulsar_toolchain.py), with real Go builds
of tiny modules: a build is reused, a broken one fails with BuildError and leaves nothing, and only
an unreachable registry makes it RegistryUnreachable (the one failure callers skip on)."""

import socket

import pytest

from bench.peers import pulsar_toolchain

pytestmark = pytest.mark.skipif(pulsar_toolchain.missing_tools("go") is not None, reason="needs Go")

GO_MOD = "module taureau.dev/toolchaintest\n\ngo 1.22\n"
MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("built") }\n'


@pytest.fixture
def builds(tmp_path, monkeypatch):
    monkeypatch.setattr(pulsar_toolchain, "BUILDS", tmp_path / "build")
    return tmp_path / "build"


def module(root, main: str, go_mod: str = GO_MOD):
    root.mkdir()
    (root / "go.mod").write_text(go_mod)
    (root / "main.go").write_text(main)
    return root


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_build_is_made_once_and_reused_until_its_sources_change(tmp_path, builds):
    source = module(tmp_path / "ok", MAIN)
    first = pulsar_toolchain.go_build(source, ".", "ok")
    made = first.stat().st_mtime_ns
    assert pulsar_toolchain.go_build(source, ".", "ok") == first
    assert first.stat().st_mtime_ns == made  # not rebuilt
    (source / "main.go").write_text(MAIN.replace("built", "changed"))
    assert pulsar_toolchain.go_build(source, ".", "ok") != first


def test_a_broken_build_fails_with_the_tools_output_and_leaves_nothing(tmp_path, builds, monkeypatch):
    monkeypatch.setenv("GOPROXY", "off")  # no registry involved: this is the code's fault
    source = module(tmp_path / "broken", MAIN.replace("fmt.Println", "fmt.Printline"))
    with pytest.raises(pulsar_toolchain.BuildError, match="Printline") as failed:
        pulsar_toolchain.go_build(source, ".", "broken")
    assert not isinstance(failed.value, pulsar_toolchain.RegistryUnreachable)
    assert list(builds.iterdir()) == []


def test_a_download_from_an_unreachable_registry_is_told_apart(tmp_path, builds, monkeypatch):
    proxy = closed_port_url()
    monkeypatch.setenv("GOPROXY", proxy)
    monkeypatch.setenv("GOFLAGS", "-mod=mod")  # fetch the missing requirement instead of refusing
    monkeypatch.setenv("GONOSUMDB", "*")
    go_mod = GO_MOD + "\nrequire example.com/nowhere v1.0.0\n"
    uses_it = 'package main\n\nimport "example.com/nowhere"\n\nfunc main() { nowhere.Go() }\n'
    source = module(tmp_path / "needs-a-download", uses_it, go_mod)
    with pytest.raises(pulsar_toolchain.RegistryUnreachable, match=f"{proxy} is unreachable"):
        pulsar_toolchain.go_build(source, ".", "needs-a-download")
    assert list(builds.iterdir()) == []
