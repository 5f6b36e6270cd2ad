"""Bounded coverage-guided fuzzing (atheris) of the decoders that read untrusted bytes: the
Pulsar frame decoder with the entry checks a SEND goes through, and the state wire codec.
Seeded and run for a fixed number of inputs, so a run is repeatable; pass = no exception
other than the decoders' own refusals, and the same verdict however the bytes are cut
(tests/fuzz/targets.py). TAUREAU_FUZZ_RUNS raises the count for a longer hunt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("TAUREAU_FUZZ_RUNS", "5000"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_decoder_survives_fuzzing(target, tmp_path):
    flags = [f"-runs={RUNS}", "-seed=1", "-max_len=4096", "-timeout=10", "-rss_limit_mb=1024",
             "-max_total_time=120", f"-artifact_prefix={tmp_path}/"]
    run = subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_main", target, str(tmp_path / "corpus"), *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    tail = "\n".join(line for line in run.stderr.splitlines() if not line.startswith(("#", "INFO: Instrumenting")))
    assert run.returncode == 0, f"{target}: the fuzzer found a crash\n{tail[-4000:]}"
    assert f"Done {RUNS} runs" in run.stderr, tail[-2000:]  # every input ran: none hung past -timeout
