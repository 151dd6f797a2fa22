"""The demo's stream step picks what the shopper clicks (serving/demo_stream.py); the run itself is tested end to
end in tests/e2e/test_stream_model.py."""

from __future__ import annotations

import pytest

from serving.demo_stream import CLICKS, pick_clicks

CATALOGUE = {"p1": "mobile", "p2": "beauty", "p3": "beauty", "p4": "beauty", "p5": "beauty", "p6": "mobile"}


def answer(*ranked: str) -> dict:
    return {"ranking": [{"product_id": p, "rank": i} for i, p in enumerate(ranked, start=1)]}


def test_the_lowest_ranked_known_candidates_category_and_other_products_of_it() -> None:
    # p_x is not in the catalogue: the lowest-ranked candidate with a category is p2
    category, clicked = pick_clicks(CATALOGUE, ["p1", "p2", "p_x"], answer("p1", "p2", "p_x"))
    assert category == "beauty"
    assert clicked == ["p3", "p4", "p5"] and len(clicked) == CLICKS  # never a candidate itself; sorted ids


def test_a_category_too_small_to_click_three_others_is_one_clear_message() -> None:
    with pytest.raises(SystemExit, match="'mobile' has fewer than 3 products outside the candidates"):
        pick_clicks(CATALOGUE, ["p1", "p2"], answer("p2", "p1"))


def test_no_known_candidate_says_what_to_run() -> None:
    with pytest.raises(SystemExit, match="run `make data` first"):
        pick_clicks({}, ["p1"], answer("p1"))
