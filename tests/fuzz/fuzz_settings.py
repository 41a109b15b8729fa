"""Hypothesis settings shared by the property tests: bounded, no example database on
disk, and deterministic under CI so that a gate run cannot turn red by chance.

CA_FUZZ_EXAMPLES raises the number of examples for a longer hunt, e.g.
`CA_FUZZ_EXAMPLES=5000 pytest tests/fuzz`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def bounded(max_examples: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("CA_FUZZ_EXAMPLES", max_examples)),
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )
