"""The user's recent click categories: how the stream writes them, and the per-candidate features read from them.

Issue 17, section 2. The stream processor (transforms/streaming/windows.py) writes three strings on the user's
stream row, each a list of top-level categories (`category_l1`, the level the simulator's session intent uses)
joined by `SEPARATOR`, newest first:

* `us_click_categories_30m`: the category of each click with event time in (t - 30 min, t], at most `MAX_LISTED`;
* `us_session_click_categories`: the same for the clicks of the current session;
* `us_last_click_categories`: the last `LAST_DISTINCT` distinct categories clicked (within the 4 h the user's
  state remembers).

A click on a product the catalogue does not know is listed as `UNKNOWN_CATEGORY` (it matches no candidate). An
empty string means no such click; a missing value (None, NaN) means no stream row (never pushed, or past the
view's TTL).

The strings never enter a model. `derive` turns them and the candidate's category (`product_category_l1`, the
product row both the point-in-time join and the online read give) into `DERIVED` numeric features; it is the one
function training and serving call, through `FeatureSpec.matrix` (platform_common/feature_spec.py), so the two
cannot compute them differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SEPARATOR = "|"
UNKNOWN_CATEGORY = "unknown"  # a click on a product missing from the catalogue; no real category has this name
MAX_LISTED = 20  # clicks listed per window string: the derived counts saturate there
LAST_DISTINCT = 3

CLICKS_30M = "us_click_categories_30m"
SESSION_CLICKS = "us_session_click_categories"
LAST_CLICKED = "us_last_click_categories"
STRING_FEATURES = (CLICKS_30M, SESSION_CLICKS, LAST_CLICKED)
CANDIDATE_CATEGORY = "product_category_l1"

# derived feature -> the user stream string it reads (and CANDIDATE_CATEGORY)
DERIVED: dict[str, str] = {
    "us_cat_clicks_30m": CLICKS_30M,
    "us_cat_session_clicks": SESSION_CLICKS,
    "us_cat_last_click_rank": LAST_CLICKED,
}
INPUTS = (*STRING_FEATURES, CANDIDATE_CATEGORY)


def join(categories: Iterable[str]) -> str:
    """The stored form of a newest-first list of categories."""
    out = list(categories)
    bad = [c for c in out if not c or SEPARATOR in c]
    if bad:
        raise ValueError(f"category names must be non-empty and free of {SEPARATOR!r}: {bad[:3]}")
    return SEPARATOR.join(out)


def split(value: Any) -> list[str] | None:
    """The list a stored string holds; None when the value is missing (no stream row)."""
    if _missing(value):
        return None
    return str(value).split(SEPARATOR) if value != "" else []


def derived_features(available: Iterable[str]) -> tuple[str, ...]:
    """The derived features a feature set can feed: all of them when it has every input, else none."""
    return tuple(DERIVED) if set(INPUTS) <= set(available) else ()


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _count(listed: list[str] | None, category: Any) -> float:
    if listed is None or _missing(category):
        return np.nan
    return float(listed.count(category))


def _rank(listed: list[str] | None, category: Any) -> float:
    if listed is None or _missing(category):
        return np.nan
    return float(listed.index(category) + 1) if category in listed else 0.0


_RULES = {"us_cat_clicks_30m": _count, "us_cat_session_clicks": _count, "us_cat_last_click_rank": _rank}


def derive(
    columns: Mapping[str, Sequence[Any] | pd.Series | np.ndarray], n_rows: int, names: Iterable[str] = DERIVED
) -> dict[str, np.ndarray]:
    """Per candidate row, each derived feature in `names` (float64; NaN when the user's stream row or the
    candidate's category is missing):

    * `us_cat_clicks_30m`: the user's clicks in the candidate's category in (t - 30 min, t] (at most MAX_LISTED);
    * `us_cat_session_clicks`: the same in the current session;
    * `us_cat_last_click_rank`: 1 if the candidate's category is the last distinct category clicked, 2 or 3 if
      the one before, 0 if none of the last three.

    `columns` must hold the strings and `product_category_l1`, one value per row (a request repeats its user's
    strings on every candidate row)."""
    names = tuple(names)
    unknown = [n for n in names if n not in _RULES]
    if unknown:
        raise ValueError(f"not derived features: {unknown}")
    needed = {DERIVED[n] for n in names} | {CANDIDATE_CATEGORY}
    absent = sorted(needed - set(columns)) if names else []
    if absent:
        raise KeyError(f"derived stream features need the columns {absent}")
    category = list(columns[CANDIDATE_CATEGORY]) if names else []
    out: dict[str, np.ndarray] = {}
    parsed: dict[str, list[list[str] | None]] = {}
    for name in names:
        source = DERIVED[name]
        if source not in parsed:
            parsed[source] = _split_rows(list(columns[source]))
        rule = _RULES[name]
        values = (rule(listed, c) for listed, c in zip(parsed[source], category, strict=True))
        out[name] = np.fromiter(values, dtype=np.float64, count=n_rows)
    return out


def _split_rows(values: list[Any]) -> list[list[str] | None]:
    # a request's rows share one user: split each distinct string once
    cache: dict[str, list[str]] = {}
    out: list[list[str] | None] = []
    for v in values:
        if _missing(v):
            out.append(None)
            continue
        listed = cache.get(v)
        if listed is None:
            listed = cache[v] = split(v) or []
        out.append(listed)
    return out
