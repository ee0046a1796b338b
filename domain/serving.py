"""Which of a model's versions serve its endpoint: one version, or a weighted split.

A split is a tuple of ``(version, weight)`` entries, weights whole percentages summing to 100.
A request is routed by a hash of its request id, so the same request id always reaches the
same version (a client's retry does not flip between versions mid-rollout).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from domain.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from uuid import UUID

Split = tuple[tuple[int, int], ...]  # ((version, weight), ...), weights summing to 100
FIRST_VERSION_ONLY: Split = ((1, 100),)
MAX_ENTRIES = 10
TOTAL_WEIGHT = 100


def check_split(entries: Iterable[tuple[int, int]], existing: Iterable[int]) -> Split:
    """A split of versions that exist, each once, weights 1 to 100 summing to 100; or raise
    ``ValidationError`` naming ``serving``."""
    split = tuple((int(version), int(weight)) for version, weight in entries)
    if not 1 <= len(split) <= MAX_ENTRIES:
        raise ValidationError("serving", f"must name 1 to {MAX_ENTRIES} versions")
    versions = [version for version, _ in split]
    if len(set(versions)) != len(versions):
        raise ValidationError("serving", "names a version more than once")
    available = set(existing)
    for version, weight in split:
        if version not in available:
            raise ValidationError("serving", f"version {version} does not exist or has no file")
        if not 1 <= weight <= TOTAL_WEIGHT:
            raise ValidationError("serving", f"weight of version {version} must be 1 to 100")
    if sum(weight for _, weight in split) != TOTAL_WEIGHT:
        raise ValidationError("serving", "weights must sum to 100")
    return split


def route(model_id: UUID, request_id: str, split: Sequence[tuple[int, int]]) -> int:
    """The version of ``split`` that serves ``request_id`` (stable across processes)."""
    if len(split) == 1:
        return split[0][0]
    # blake2b keyed by the model: uniform, stable, and independent between models.
    digest = hashlib.blake2b(request_id.encode(), digest_size=8, key=model_id.bytes).digest()
    point = int.from_bytes(digest, "big") % TOTAL_WEIGHT
    for version, weight in split:
        point -= weight
        if point < 0:
            return version
    return split[-1][0]  # unreachable for a checked split
