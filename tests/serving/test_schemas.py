import pytest
from pydantic import ValidationError

from serving.schemas import MAX_CANDIDATES, RankRequest


def test_valid_request_defaults_surface():
    r = RankRequest.model_validate({"user_id": "u1", "product_ids": ["p1", "p2"]})
    assert r.surface == "home_feed"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"user_id": "u1", "product_ids": []}, "at least 1"),
        ({"user_id": "u1", "product_ids": ["p"] * 2}, "unique"),
        ({"user_id": "u1", "product_ids": [f"p{i}" for i in range(MAX_CANDIDATES + 1)]}, "at most"),
        ({"user_id": 7, "product_ids": ["p1"]}, "valid string"),
        ({"user_id": "u1", "product_ids": [1, 2]}, "valid string"),
        ({"user_id": "u1", "product_ids": ["p1"], "surface": "tv"}, "surface"),
        ({"user_id": "u1", "product_ids": ["p1"], "extra": 1}, "Extra inputs"),
        ({"user_id": "", "product_ids": ["p1"]}, "at least 1"),
        ({"user_id": "u" * 65, "product_ids": ["p1"]}, "at most 64"),
    ],
)
def test_bad_requests_are_rejected_with_a_reason(body, needle):
    with pytest.raises(ValidationError, match=needle):
        RankRequest.model_validate(body)
