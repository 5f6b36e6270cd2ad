"""One module per sketch kind; each registers its class with `taureau.sketches.registry`."""
