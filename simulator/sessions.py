"""Sessions of several pages and the intent they shop with: the parts history and live mode share.

A session has 1..max_pages pages (1 + a truncated geometric), pages a viewing time plus a lognormal pause
apart, sometimes a return visit minutes later. With probability `intent_prob` it has an intent category
(mostly one of the user's tastes); every click raises the same category's click logit for the rest of the
session, up to a cap. `true_probabilities` turns the two per-impression terms into logit boosts; the model
and its parameters are in docs/simulator.md, "Sessions and intent".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import CATALOG, SimConfig
from simulator.entities import SECOND_US

NO_INTENT = -1


def mean_pages(config: SimConfig) -> float:
    """Expected pages per session: sum of continue^k for k < max_pages (the truncated geometric's mean)."""
    sp = config.params.sessions
    return float(sum(sp.page_continue**k for k in range(sp.max_pages)))


def draw_plan(rng: np.random.Generator, config: SimConfig, taste_category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pages, intent category or NO_INTENT) per session; `taste_category`: a draw from each user's taste."""
    sp = config.params.sessions
    n = len(taste_category)
    pages = np.minimum(rng.geometric(1.0 - sp.page_continue, n), sp.max_pages).astype(np.int32)
    has_intent = rng.random(n) < sp.intent_prob
    from_taste = rng.random(n) < sp.intent_from_taste
    outside = rng.integers(0, len(CATALOG), n)
    intent = np.where(has_intent, np.where(from_taste, taste_category, outside), NO_INTENT)
    return pages, intent.astype(np.int64)


def page_gap_us(rng: np.random.Generator, config: SimConfig, viewed_s: np.ndarray) -> np.ndarray:
    """From one page's request to the next: the page's viewing time, a pause, sometimes a return visit."""
    sp = config.params.sessions
    n = len(viewed_s)
    pause = rng.lognormal(np.log(sp.think_median_s), sp.think_sigma, n)
    away = np.where(rng.random(n) < sp.return_visit_prob, rng.uniform(*sp.return_visit_min, n) * 60.0, 0.0)
    # the whole gap stays under the processor's 30-minute session window: a return is the same session
    gap_s = np.minimum(viewed_s + pause + away, 29.0 * 60.0)
    return (np.maximum(gap_s, 1.0) * SECOND_US).astype(np.int64)


@dataclass(frozen=True)
class SessionTerms:
    """Per impression: does the product match the session's intent; the session's clicks in its category."""

    intent_match: np.ndarray  # bool
    session_interest: np.ndarray  # int, clicks so far this session in the product's category (uncapped)


def session_terms(intent: np.ndarray, interest: np.ndarray, session: np.ndarray, category: np.ndarray) -> SessionTerms:
    """`intent` per session, `interest` (sessions x categories); per impression its `session` row and `category`."""
    own = intent[session]
    return SessionTerms(
        intent_match=(own == category) & (own != NO_INTENT),
        session_interest=interest[session, category].astype(np.int32),
    )


def add_clicks(interest: np.ndarray, session: np.ndarray, category: np.ndarray) -> None:
    """Count clicks (session row, product category) into `interest` in place."""
    np.add.at(interest, (session, category), 1)
