"""Packaging metadata that a fresh install depends on."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression():
    # setuptools warns that the table form ({text = ...}) stops being accepted after 2027-02-18.
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["license"] == "Apache-2.0"
