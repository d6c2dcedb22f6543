"""Property-based fuzzing of the sequence readers (see tests/fuzzing.py): mutated and random FASTA / table bytes,
plain, gzip and cut gzip, strict or not, with or without a length limit, read as a corpus or for inference.
Never a traceback, never a record lost uncounted. Derandomized, so CI sees the same cases every run;
`bench/fuzz_readers.py` runs as many fresh ones as asked (PROTLM_FUZZ_EXAMPLES sets the count here)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from fuzzing import cases, check

EXAMPLES = int(os.environ.get("PROTLM_FUZZ_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_readers_never_crash_and_never_lose_a_record(case):
    check(*case)
