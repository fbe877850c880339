"""The criterion registry: one `Criterion` per field of the rule contract, by family.

Importing this package registers every criterion (`REGISTRY[key]`).
"""

from segments.criteria.base import (
    MATCH_ALL,
    MATCH_NONE,
    REGISTRY,
    CompileContext,
    Criterion,
    ValidationContext,
    register,
)

from . import profile, purchases, scores, segments  # noqa: F401 - importing registers them

__all__ = [
    "MATCH_ALL",
    "MATCH_NONE",
    "REGISTRY",
    "CompileContext",
    "Criterion",
    "ValidationContext",
    "register",
]
