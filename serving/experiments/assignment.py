"""Which arm a user is in: a pure function of (salt, user_id), the same in every worker, replica and language.

SHA-256 of `salt` and `user_id` (UTF-8, joined by a NUL byte so that ("ab", "c") and ("a", "bc") differ)
-> the first 8 bytes as a big-endian integer / 2**64 -> a bucket in [0, 1) -> the arm whose cumulative share
first exceeds it. Python's `hash()` is salted per process and would split one user across workers. A new
salt reshuffles every user, independently of the last experiment's split.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

_SCALE = float(2**64)


def bucket(salt: str, unit: str) -> float:
    digest = hashlib.sha256(salt.encode() + b"\x00" + unit.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


class Assigner:
    """Arm names and their cumulative shares, computed once per experiment, not per request."""

    def __init__(self, salt: str, arms: Sequence[str], shares: Sequence[float]) -> None:
        self.salt = salt
        self.arms = tuple(arms)
        # The last bound is exactly 1 so that rounding in the shares can never leave a bucket without an arm.
        self.bounds = [*list(accumulate(shares))[:-1], 1.0]

    def arm(self, unit: str) -> str:
        index = bisect_right(self.bounds, bucket(self.salt, unit))
        return self.arms[min(index, len(self.arms) - 1)]
