"""Hypothesis profiles: `quick` (the default, for local runs of pytest) tries a few examples
per property; `full` (what `make test` and CI run: HYPOTHESIS_PROFILE=full) tries the number
each test asks for, e.g. the 500 random rule trees of the property test.

Tests pass their full number through `examples()`, so a quick run scales it down."""

from __future__ import annotations

import os

from hypothesis import settings

QUICK_EXAMPLES = 25

settings.register_profile("full", deadline=None, print_blob=True)
settings.register_profile("quick", deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
settings.load_profile(PROFILE)


def examples(full: int) -> int:
    """How many examples a property tries under the current profile."""
    return full if PROFILE == "full" else min(full, QUICK_EXAMPLES)
