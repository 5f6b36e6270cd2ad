"""Names, errors and small helpers used by every layer."""
