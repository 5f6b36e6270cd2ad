"""`python -m tests.fuzz.atheris_main TARGET CORPUS_DIR [libFuzzer flags]`: one bounded,
coverage-guided atheris run (tests/fuzz/test_atheris.py runs each target in CI).

The decoders are instrumented so libFuzzer is guided by their branches; the corpus directory
is filled with valid frames first, so mutations start from what real peers send.
"""

from __future__ import annotations

import os
import sys

import atheris

with atheris.instrument_imports(include=["taureau"]):
    import taureau.protocol.batch
    import taureau.protocol.framing
    import taureau.protocol.metadata
    import taureau.protocol.validate
    import taureau.state.codec  # noqa: F401 - imported here to be instrumented

from tests.fuzz.targets import TARGETS


def main() -> None:
    target, corpus, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    run, seeds = TARGETS[target]
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(seeds()):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(seed)
    atheris.Setup([sys.argv[0], *flags, corpus], run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
