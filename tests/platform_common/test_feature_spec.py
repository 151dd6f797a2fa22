import math

import numpy as np
import pandas as pd

from platform_common.feature_spec import SURFACES, FeatureSpec


def make_spec() -> FeatureSpec:
    frame = pd.DataFrame({"device": ["ios", "android", None], "surface": ["search"] * 3, "x": [1, 2, 3]})
    return FeatureSpec.fit(frame, "svc", ["x"], ["device", "surface"])


def test_vocabulary_is_sorted_and_surface_is_fixed():
    spec = make_spec()
    assert spec.vocabularies["device"] == ("android", "ios")
    assert spec.vocabularies["surface"] == SURFACES
    assert spec.columns == ("x", "device", "surface")


def test_matrix_encodes_unknowns_and_nulls_as_missing():
    spec = make_spec()
    m = spec.matrix({"x": [1, None], "device": ["ios", "windows-phone"], "surface": ["live_stream", None]}, 2)
    assert m.dtype == np.float32
    assert m[0].tolist() == [1.0, 1.0, float(SURFACES.index("live_stream"))]
    assert all(math.isnan(v) for v in m[1])


def test_spec_round_trips_through_json():
    spec = make_spec()
    assert FeatureSpec.model_validate_json(spec.model_dump_json()) == spec
