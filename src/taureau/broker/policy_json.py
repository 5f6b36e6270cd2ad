"""Checks shared by the policy values read from REST bodies and stored records."""

from __future__ import annotations

from typing import Any


def json_object(data: Any, known: set[str], what: str) -> dict[str, Any]:
    """`data` if it is a JSON object with no field but `known`; ValueError naming `what`."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} field(s) {sorted(unknown)}")
    return data


def integer(value: Any, name: str, low: int, high: int, meaning: str = "") -> int:
    """`value` if it is an integer (not a bool) from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}{meaning}, got {value!r}")
    return value
