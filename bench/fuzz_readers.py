"""Fuzz the sequence readers with as many fresh cases as asked (the properties of tests/fuzzing.py).

Prints how many cases ran, how many were read and how many ended in a one-line `InputError`; any other
exception, or a record lost uncounted, stops the run with the failing case (hypothesis shrinks it first).

    .venv/bin/python bench/fuzz_readers.py --cases 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from fuzzing import cases, check  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    args = ap.parse_args()
    outcomes: Counter = Counter()

    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cases)
    def run(case):
        outcomes[check(*case)] += 1

    t0 = time.perf_counter()
    run()
    n = sum(outcomes.values())
    print(f"{n:,} cases in {time.perf_counter() - t0:.0f}s: {outcomes['read']:,} read whole, "
          f"{outcomes['error']:,} one-line InputError, 0 tracebacks, 0 records lost")  # fmt: skip


if __name__ == "__main__":
    main()
