"""The secrets providers: environment, clear text, and files under the function's own
directory, which a function cannot name its way out of; values never logged."""

from __future__ import annotations

import logging

import pytest

from taureau.functions.secrets import MAX_SECRET_BYTES, SecretsProvider, function_secrets_dir


@pytest.fixture
def secrets_root(tmp_path):
    mine = tmp_path / "acme" / "ns" / "mine"
    mine.mkdir(parents=True)
    (mine / "db.txt").write_text("hunter2\n")
    other = tmp_path / "acme" / "ns" / "other"
    other.mkdir(parents=True)
    (other / "db.txt").write_text("not-yours")
    (mine / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    return tmp_path


def test_file_provider_reads_the_functions_own_files(secrets_root, caplog):
    provider = SecretsProvider("file", function_secrets_dir(str(secrets_root), "acme", "ns", "mine"))
    with caplog.at_level(logging.DEBUG):
        assert provider.provide_secret("db", "db.txt") == "hunter2"
        assert provider.provide_secret("db.txt", None) == "hunter2"  # no path: the secret's name
        assert provider.provide_secret("missing", "nope.txt") is None
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("path", ["../other/db.txt", "{root}/acme/ns/other/db.txt", "sub/../../other/db.txt"])
def test_file_provider_refuses_other_functions_files(secrets_root, caplog, path):
    provider = SecretsProvider("file", function_secrets_dir(str(secrets_root), "acme", "ns", "mine"))
    with caplog.at_level(logging.WARNING):
        assert provider.provide_secret("db", path.format(root=secrets_root)) is None
    assert "outside the function's secrets directory" in caplog.text and "not-yours" not in caplog.text


def test_file_provider_refuses_an_oversized_secret(secrets_root):
    provider = SecretsProvider("file", function_secrets_dir(str(secrets_root), "acme", "ns", "mine"))
    assert provider.provide_secret("big", "big") is None


def test_env_and_cleartext_and_bad_kinds(monkeypatch):
    monkeypatch.setenv("TAUREAU_TEST_SECRET", "from-env")
    assert SecretsProvider("env").provide_secret("TAUREAU_TEST_SECRET", "ignored") == "from-env"
    assert SecretsProvider("cleartext").provide_secret("x", "written") == "written"
    with pytest.raises(ValueError, match="unknown secrets provider 'vault'"):
        SecretsProvider("vault")
    with pytest.raises(ValueError, match="needs a directory"):
        SecretsProvider("file")
