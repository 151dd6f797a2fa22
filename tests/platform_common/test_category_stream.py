"""The per-candidate features derived from the user's recent click categories (platform_common/category_stream.py),
and the one path training and serving take through them (FeatureSpec.matrix)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from platform_common.category_stream import DERIVED, derive, derived_features, join, split
from platform_common.feature_spec import FeatureSpec

ROWS = {
    # one user's strings repeated on the first three candidate rows, as a request has them; then a user with no
    # click (""), two rows without a stream row (None, NaN), the last one also without a product row
    "us_click_categories_30m": ["beauty|fashion|beauty"] * 3 + ["", None, np.nan],
    "us_session_click_categories": ["beauty|fashion"] * 3 + ["", None, np.nan],
    "us_last_click_categories": ["beauty|fashion|unknown"] * 3 + ["", None, np.nan],
    "product_category_l1": ["beauty", "fashion", "toys", "beauty", "beauty", None],
}


def test_counts_and_rank_per_candidate_category():
    out = derive(ROWS, 6)
    assert set(out) == set(DERIVED)
    assert out["us_cat_clicks_30m"][:4].tolist() == [2.0, 1.0, 0.0, 0.0]
    assert out["us_cat_session_clicks"][:4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert out["us_cat_last_click_rank"][:4].tolist() == [1.0, 2.0, 0.0, 0.0]  # 0: not among the last three
    # no stream row, or no candidate category: missing, not zero
    for name in DERIVED:
        assert all(math.isnan(v) for v in out[name][4:]), name


def test_unknown_never_matches_a_real_category_and_a_subset_is_derived_alone():
    out = derive(ROWS, 6, ["us_cat_last_click_rank"])
    assert list(out) == ["us_cat_last_click_rank"]
    assert out["us_cat_last_click_rank"][2] == 0.0  # toys is not "unknown"


def test_bad_calls_are_named():
    with pytest.raises(KeyError, match="product_category_l1"):
        derive({k: v for k, v in ROWS.items() if k != "product_category_l1"}, 6)
    with pytest.raises(ValueError, match="not derived"):
        derive(ROWS, 6, ["us_clicks_5m"])
    with pytest.raises(ValueError, match="free of"):
        join(["home|garden"])
    assert split("") == [] and split(None) is None and split("a|b") == ["a", "b"]


def test_only_a_feature_set_with_every_input_gets_the_derived_features():
    assert derived_features(["us_click_categories_30m", "us_session_click_categories", "us_last_click_categories",
                             "product_category_l1", "price"]) == tuple(DERIVED)  # fmt: skip
    assert derived_features(["product_category_l1", "price"]) == ()  # ctr_model_v1's features


def stream_spec() -> FeatureSpec:
    frame = pd.DataFrame({"product_category_l1": ["beauty", "fashion"], "surface": ["search", "search"]})
    return FeatureSpec.fit(frame, "ctr_model_v2_stream", ["price", *DERIVED], ["product_category_l1", "surface"])


def test_the_spec_derives_inside_the_matrix_from_its_raw_inputs():
    spec = stream_spec()
    assert spec.derived == tuple(DERIVED)
    assert spec.inputs == ("price", "product_category_l1", "surface", "us_click_categories_30m",
                           "us_session_click_categories", "us_last_click_categories")  # fmt: skip
    frame = pd.DataFrame(ROWS).assign(price=1.5, surface="search")
    # a derived value already in the frame is ignored: the matrix always derives it from the strings
    m = spec.frame_matrix(frame.assign(us_cat_clicks_30m=99.0))
    expected = derive(ROWS, 6)
    for j, name in enumerate(spec.numeric):
        if name in DERIVED:
            np.testing.assert_array_equal(m[:, j], expected[name].astype(np.float32))
    assert (m[:, 0] == 1.5).all()
    # the raw strings never enter the matrix
    assert m.shape == (6, len(spec.columns)) and not set(spec.columns) & set(ROWS) - {"product_category_l1"}
    # serving's dict of columns gives the same matrix as training's frame
    served = spec.matrix({**{c: list(frame[c]) for c in spec.inputs}}, 6)
    np.testing.assert_array_equal(m, served)


def test_a_spec_without_derived_features_needs_no_strings():
    frame = pd.DataFrame({"device": ["ios"], "surface": ["search"]})
    spec = FeatureSpec.fit(frame, "ctr_model_v1", ["price"], ["device", "surface"])
    assert spec.derived == () and spec.inputs == spec.columns
    assert spec.matrix({"price": [2.0], "device": ["ios"], "surface": ["search"]}, 1).tolist() == [[2.0, 0.0, 3.0]]
