"""User -> arm: deterministic, in the requested shares, reshuffled by a new salt, the same in any process."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from serving.experiments.assignment import Assigner, bucket

USERS = [f"u{i:07d}" for i in range(100_000)]


def test_shares_hold_within_one_percent_over_100k_users():
    assigner = Assigner("salt-1", ["control", "treatment", "other"], [0.5, 0.3, 0.2])
    counts = Counter(assigner.arm(u) for u in USERS)
    for arm, share in {"control": 0.5, "treatment": 0.3, "other": 0.2}.items():
        assert abs(counts[arm] / len(USERS) - share) < 0.01, counts


def test_the_same_user_always_gets_the_same_arm_and_a_new_salt_reshuffles():
    a = Assigner("salt-1", ["control", "treatment"], [0.5, 0.5])
    first = [a.arm(u) for u in USERS[:20_000]]
    assert first == [Assigner("salt-1", ["control", "treatment"], [0.5, 0.5]).arm(u) for u in USERS[:20_000]]
    other = [Assigner("salt-2", ["control", "treatment"], [0.5, 0.5]).arm(u) for u in USERS[:20_000]]
    same = sum(x == y for x, y in zip(first, other, strict=True)) / len(first)
    assert 0.48 < same < 0.52  # independent splits agree half of the time, not always and not never


def test_buckets_are_uniform_and_independent_of_the_process():
    buckets = [bucket("s", u) for u in USERS]
    assert all(0.0 <= b < 1.0 for b in buckets)
    tenths = Counter(int(b * 10) for b in buckets)
    assert all(abs(n / len(USERS) - 0.1) < 0.01 for n in tenths.values()) and len(tenths) == 10
    # Another interpreter (another PYTHONHASHSEED, as another BentoML worker or replica would have) agrees.
    code = "from serving.experiments.assignment import bucket; print(repr(bucket('s', 'u0000042')))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONHASHSEED": "12345"}, capture_output=True, text=True, check=True
    )
    assert float(out.stdout) == bucket("s", "u0000042")


def test_a_bucket_just_below_one_still_gets_the_last_arm():
    assigner = Assigner("s", ["a", "b", "c"], [0.1, 0.2, 0.7])
    assert assigner.bounds[-1] == 1.0
    assert {assigner.arm(u) for u in USERS[:1000]} == {"a", "b", "c"}
