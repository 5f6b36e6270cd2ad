"""Non-persistent topics (`non-persistent://`): messages go from producers straight to the
consumers connected at publish time, never stored; see docs/non-persistent.md."""
