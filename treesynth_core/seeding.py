"""Stable seeds: the same purpose and the same inputs always give the same seed, in every process."""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from text parts: the same node and purpose always get the same seed."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
