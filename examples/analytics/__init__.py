"""Serverless analytics examples: run any of them as a script (python examples/analytics/NAME.py --help)."""
