"""Team-draft interleaving: a permutation of the candidates, every slot credited, fair, deterministic."""

from __future__ import annotations

import random

import pytest

from serving.experiments.interleaving import coin_seed, team_draft


def rankings(n: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    a, b = list(range(n)), list(range(n))
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b


@pytest.mark.parametrize("n", [1, 2, 7, 100, 500])
def test_no_duplicates_every_slot_credited(n):
    a, b = rankings(n, n)
    merged, teams = team_draft(a, b, seed=coin_seed("salt", "req-1"))
    assert sorted(merged) == list(range(n))
    assert len(teams) == n and set(teams) <= {0, 1}


def test_each_team_picks_its_best_remaining_candidate():
    a, b = rankings(50, 3)
    merged, teams = team_draft(a, b, seed=7)
    for slot, (item, team) in enumerate(zip(merged, teams, strict=True)):
        own = a if team == 0 else b
        remaining = [c for c in own if c not in merged[:slot]]
        assert item == remaining[0]


def test_teams_stay_balanced_and_each_arm_gets_about_half_over_many_requests():
    a, b = rankings(20, 11)
    from_a = 0
    first_from_a = 0
    requests = 4000
    for r in range(requests):
        _, teams = team_draft(a, b, seed=coin_seed("salt", f"req-{r}"))
        counts = (teams.count(0), teams.count(1))
        assert abs(counts[0] - counts[1]) <= 1  # picks alternate within each round
        from_a += counts[0]
        first_from_a += teams[0] == 0
    assert from_a / (requests * 20) == pytest.approx(0.5, abs=0.01)
    assert first_from_a / requests == pytest.approx(0.5, abs=0.03)  # the coin decides who picks first


def test_identical_rankings_merge_to_the_same_ranking():
    a = list(range(30))
    merged, teams = team_draft(a, list(a), seed=1)
    assert merged == a and len(teams) == 30


def test_deterministic_from_salt_and_request_id():
    a, b = rankings(100, 5)
    one = team_draft(a, b, coin_seed("salt", "req-42"))
    assert one == team_draft(a, b, coin_seed("salt", "req-42"))
    others = {tuple(team_draft(a, b, coin_seed("salt", f"req-{i}"))[1]) for i in range(20)}
    assert len(others) > 15  # another request id flips other coins
    assert team_draft(a, b, coin_seed("other", "req-42")) != one


def test_rankings_of_different_candidates_are_refused():
    with pytest.raises(ValueError, match="same candidates"):
        team_draft([0, 1, 2], [0, 1, 3], seed=1)
