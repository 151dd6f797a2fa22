"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

Two rankings of the same candidates are merged into one list: each round a coin decides which team picks
first, then each team in turn adds its highest-ranked candidate not yet in the list. Every slot is credited to
the team that picked it, so a click or an order on it counts for that arm. The coin is fair (each arm gets
half the slots in expectation, and the first slot is each arm's top pick half of the time) and seeded from
(salt, request id): the same request always gets the same merge, in any worker.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def coin_seed(salt: str, request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(salt.encode() + b"\x00" + request_id.encode()).digest()[:8], "big")


def team_draft(a: Sequence[int], b: Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """Merge rankings `a` and `b` (each a permutation of the same candidate indices, best first).

    Returns the merged candidate indices and, per slot, the team that picked it (0: `a`, 1: `b`).
    """
    if sorted(a) != sorted(b):
        raise ValueError("team draft needs two rankings of the same candidates")
    rng = random.Random(seed)  # Random(int) is specified to give the same stream on every platform
    rankings = (a, b)
    heads = [0, 0]  # each team's next unread position in its own ranking
    picked: set[int] = set()
    merged: list[int] = []
    teams: list[int] = []
    n = len(a)
    while len(merged) < n:
        first = rng.getrandbits(1)
        for team in (first, 1 - first):
            ranking, i = rankings[team], heads[team]
            while i < n and ranking[i] in picked:
                i += 1
            heads[team] = i
            if i == n:  # both rankings hold the same candidates: nothing left for either team
                break
            picked.add(ranking[i])
            merged.append(ranking[i])
            teams.append(team)
    return merged, teams
