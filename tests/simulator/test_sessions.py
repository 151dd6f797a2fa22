"""Sessions of several pages, session intent and in-session interest (docs/simulator.md, "Sessions and intent")."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from simulator.campaigns import DAY_US, Days, build_days
from simulator.config import CATALOG, SURFACES, SimConfig
from simulator.days import local_hours, simulate_days
from simulator.entities import (
    SECOND_US,
    Merchants,
    Panels,
    Products,
    Users,
    make_merchants,
    make_panels,
    make_products,
    make_users,
    plant_causes,
    rng_for,
)
from simulator.live.session import (
    LiveMarket,
    Returning,
    Served,
    candidate_truth,
    draw_sessions,
    next_batch,
    next_pages,
    react,
)
from simulator.live.world_store import StoredWorld, load_world
from simulator.sessions import NO_INTENT, session_terms
from simulator.traffic import true_probabilities
from tests.simulator.conftest import END_DATE, Run

NOW_US = int(pd.Timestamp(END_DATE, tz="UTC").value // 1000) + 10 * 3600 * SECOND_US


def _world(config: SimConfig) -> tuple[Days, tuple[Users, Merchants, Products, Panels]]:
    seed, days = config.seed, build_days(config)
    users = make_users(config, days, rng_for(seed, "users"))
    merchants = make_merchants(config, days, rng_for(seed, "merchants"))
    products = make_products(config, days, merchants, rng_for(seed, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(seed, "plants"))
    return days, (
        users,
        merchants,
        products,
        make_panels(config, days, merchants, products, planted, rng_for(seed, "panels")),
    )


def _first_day(config: SimConfig) -> dict[str, np.ndarray]:
    days, world = _world(config)
    return next(iter(simulate_days(config, days, *world, rng=rng_for(config.seed, "traffic"))))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _impressions(run: Run) -> pd.DataFrame:
    """Clean impressions with their session truth, product category and whether they were clicked."""
    return (
        duckdb.connect()
        .execute(
            f"""
        select i.impression_id, i.request_id, i.event_ts, i.user_id, p.category_l1, s.session_id,
               s.page_in_session, s.intent_category, s.intent_match, s.session_interest,
               c.impression_id is not null as clicked
        from read_parquet('{run.raw}/impressions/*/*.parquet') i
        join read_parquet('{run.oracle}/session_truth.parquet') s using (impression_id)
        join (select distinct product_id, category_l1 from read_parquet('{run.raw}/products/*/*.parquet')) p
          using (product_id)
        left join (select distinct impression_id from read_parquet('{run.raw}/clicks/*/*.parquet')) c
          using (impression_id)
        qualify count(*) over (partition by i.impression_id) = 1
        """
        )
        .df()
    )


@pytest.fixture(scope="module")
def imps(tiny: Run) -> pd.DataFrame:
    return _impressions(tiny)


def test_session_truth_covers_every_landed_impression(tiny: Run) -> None:
    truth = pq.read_table(tiny.oracle / "impression_truth.parquet", columns=["impression_id"])
    sessions = pq.read_table(tiny.oracle / "session_truth.parquet", columns=["impression_id"])
    assert truth.column(0).equals(sessions.column(0))


def test_sessions_have_several_pages_with_realistic_gaps(imps: pd.DataFrame) -> None:
    requests = imps.groupby(["session_id", "request_id"], as_index=False).agg(
        ts=("event_ts", "min"), page=("page_in_session", "first"), users=("user_id", "nunique")
    )
    assert (requests["users"] == 1).all()  # a session is one shopper's
    pages = requests.groupby("session_id")["request_id"].nunique()
    # e-commerce logs: 2-5 page views per session on average; here 1 + a truncated geometric, mean 2.4
    assert 1.9 <= pages.mean() <= 3.0, pages.mean()
    assert pages.max() <= 6
    assert (pages > 1).mean() > 0.4
    requests = requests.sort_values(["session_id", "ts"])
    # pages come in their order, and a session's requests are its pages 1, 2, ...
    assert (requests.groupby("session_id")["page"].diff().dropna() == 1).mean() > 0.97
    gaps = requests.groupby("session_id")["ts"].diff().dropna().dt.total_seconds()
    assert 20 <= gaps.median() <= 180, gaps.median()  # seconds to minutes between pages
    assert gaps.max() < 30 * 60  # a return visit stays inside the 30-minute session window
    assert 0.03 <= (gaps > 3 * 60).mean() <= 0.35  # some return visits minutes later


def test_sessions_keep_the_daily_volume(tiny: Run) -> None:
    # fewer sessions, more pages each: the impressions per day stay at the scale's target
    assert 34_000 <= tiny.summary.rows["impressions"] <= 46_000


def test_intent_category_is_clicked_more_in_the_same_sessions(imps: pd.DataFrame) -> None:
    with_intent = imps[imps["intent_category"].notna()]
    assert 0.4 <= imps.groupby("session_id")["intent_category"].first().notna().mean() <= 0.7
    by_session = with_intent.groupby(["session_id", "intent_match"])["clicked"].agg(["sum", "count"]).unstack()
    both = by_session.dropna()  # sessions that saw both intent and other products
    ctr_match = both[("sum", True)].sum() / both[("count", True)].sum()
    ctr_other = both[("sum", False)].sum() / both[("count", False)].sum()
    assert ctr_match > 1.6 * ctr_other, (ctr_match, ctr_other)
    # an intent session's searches search its intent
    assert (with_intent["intent_match"]).mean() > 0.2


def _with_weights(config: SimConfig, **weights: float) -> SimConfig:
    sessions = config.params.sessions.model_copy(update=weights)
    return config.model_copy(update={"params": config.params.model_copy(update={"sessions": sessions})})


def _interest_lift(config: SimConfig) -> tuple[float, int]:
    """CTR on later pages after a click on the category earlier in the session over CTR without one (products
    outside the session's intent), and how many impressions came after such a click."""
    days, world = _world(config)
    hits, counts = np.zeros(2), np.zeros(2)
    for day in simulate_days(config, days, *world, rng=rng_for(config.seed, "traffic")):
        clicked = np.zeros(len(day["imp_ts"]), dtype=bool)
        clicked[day["clk_imp"]] = True
        later = ~day["imp_intent_match"] & (day["imp_page"] > 1)
        after = day["imp_interest"] > 0
        for k, rows in enumerate((later & ~after, later & after)):
            hits[k] += clicked[rows].sum()
            counts[k] += rows.sum()
    ctr = hits / counts
    return float(ctr[1] / ctr[0]), int(counts[1])


def test_a_click_raises_later_same_category_clicks_in_the_session() -> None:
    """Versus the same world without the interest term: a shopper who clicked a category clicks it more
    anyway (taste), so the lift is measured against that baseline, not against 1."""
    config = SimConfig(scale="tiny", seed=42, end_date=END_DATE)
    lift, n_after = _interest_lift(config)
    lift_without, _ = _interest_lift(_with_weights(config, interest_click_weight=0.0))
    assert n_after > 1000
    # the model: +0.3 per earlier click on the logit, about x1.35 on the CTR for one or two clicks
    assert lift > 1.2 * lift_without, (lift, lift_without)


def test_recorded_interest_counts_the_sessions_earlier_clicks(imps: pd.DataFrame) -> None:
    """session_interest = clicks on the category on the session's earlier pages, recomputed from the raw clicks
    (a few raw rows are flawed on purpose, so agreement, not identity)."""
    clicks = imps[imps["clicked"]]
    per_page = clicks.groupby(["session_id", "category_l1", "page_in_session"]).size().rename("n").reset_index()
    merged = imps.merge(per_page, on=["session_id", "category_l1"], how="left", suffixes=("", "_clk"))
    merged["earlier"] = np.where(merged["page_in_session_clk"] < merged["page_in_session"], merged["n"], 0)
    recomputed = merged.groupby("impression_id").agg(
        recomputed=("earlier", "sum"), recorded=("session_interest", "first")
    )
    assert (recomputed["recomputed"] == recomputed["recorded"]).mean() > 0.98
    assert (recomputed["recorded"] > 0).mean() > 0.03


def test_oracle_probabilities_include_the_session_terms() -> None:
    """The same world and seed with the session weights at zero: page 1 of the first day draws the same
    impressions, and their true logits differ by exactly the intent terms."""
    config = SimConfig(scale="tiny", seed=7, end_date=END_DATE)
    sp = config.params.sessions
    flat = _with_weights(config, intent_click_weight=0.0, intent_order_weight=0.0, interest_click_weight=0.0)
    ours, theirs = _first_day(config), _first_day(flat)
    page1 = np.flatnonzero(ours["imp_page"] == 1)
    n1 = int((theirs["imp_page"] == 1).sum())
    assert len(page1) == n1 > 500
    for key in ("imp_product", "imp_user", "imp_position", "imp_surface", "imp_intent", "imp_intent_match"):
        assert np.array_equal(ours[key][page1], theirs[key][:n1])
    assert (ours["imp_interest"][page1] == 0).all()

    match = ours["imp_intent_match"][page1]
    assert 0.1 < match.mean() < 0.6
    # p_click = examination(position, surface) x attraction: the attraction's logit moves by the intent weight
    eta = np.array([config.params.clicks.examination_eta[s] for s in SURFACES])
    exam = ours["imp_position"][page1] ** (-eta[ours["imp_surface"][page1]])
    click_diff = _logit(ours["p_click"][page1] / exam) - _logit(theirs["p_click"][:n1] / exam)
    assert np.allclose(click_diff, sp.intent_click_weight * match, atol=1e-9)
    order_diff = _logit(ours["p_order"][page1]) - _logit(theirs["p_order"][:n1])
    assert np.allclose(order_diff, sp.intent_order_weight * match, atol=1e-9)
    # later pages carry the interest of earlier clicks
    later = ours["imp_page"] > 1
    assert (ours["imp_interest"][later] > 0).any()


@pytest.fixture(scope="module")
def world(tiny: Run) -> StoredWorld:
    return load_world(tiny.oracle)


def test_live_and_history_give_the_same_probabilities(world: StoredWorld) -> None:
    """The live truth of a candidate (`candidate_truth`) is the history's (`true_probabilities` with the
    session terms computed as `simulator.days` does), for the same shopper, product, time, noise and session."""
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(5)
    batch = draw_sessions(rng, market, 500, NOW_US)
    # give the sessions some history: intents everywhere, and clicks on earlier pages
    interest = rng.integers(0, 5, batch.interest.shape).astype(np.int32)
    intent = rng.integers(NO_INTENT, len(CATALOG), batch.n)
    batch = type(batch)(**{**batch.__dict__, "interest": interest, "intent": intent})
    request = np.repeat(np.arange(batch.n), np.diff(batch.offsets))
    rows = np.arange(len(batch.product))
    at_us = NOW_US + rng.integers(0, DAY_US, batch.n)[request]
    user, surface = batch.user[request], batch.surface[request]
    live = candidate_truth(market, batch, rows, user, surface, at_us)

    config, users = world.config, world.users
    hour = local_hours(users, at_us, user)
    lo, hi = config.params.clicks.evening_hours
    terms = session_terms(intent, interest, request, world.products.category[batch.product])
    history = true_probabilities(
        config,
        users,
        world.merchants,
        world.products,
        market.state,
        user,
        batch.product,
        surface,
        (hour >= lo) & (hour <= hi),
        batch.click_noise,
        batch.order_noise,
        terms.intent_match,
        terms.session_interest,
    )
    assert np.array_equal(live.attraction, history.attraction)
    assert np.array_equal(live.p_order, history.p_order)
    assert terms.intent_match.any() and (terms.session_interest > 0).any()

    # and the terms move the live truth as the model says: intent and capped interest on the click logit
    plain = type(batch)(**{**batch.__dict__, "interest": np.zeros_like(interest), "intent": np.full(batch.n, -1)})
    base = candidate_truth(market, plain, rows, user, surface, at_us)
    sp = config.params.sessions
    expected = sp.intent_click_weight * terms.intent_match + sp.interest_click_weight * np.minimum(
        terms.session_interest, sp.interest_cap
    )
    logit = _logit(live.attraction) - _logit(base.attraction)
    assert np.allclose(logit, expected, atol=1e-9)


def test_live_sessions_come_back_for_their_next_pages(world: StoredWorld) -> None:
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(11)
    batch = draw_sessions(rng, market, 3000, NOW_US, first_session=100)
    lengths = np.diff(batch.offsets)
    served = Served(
        session=np.arange(batch.n),
        answered_us=np.full(batch.n, NOW_US, dtype=np.int64),
        offsets=batch.offsets.copy(),
        product=batch.product.copy(),
    )
    out = react(rng, market, batch, served)
    follow = next_pages(rng, market, batch, served, out)
    assert follow.n == int((batch.pages > 1).sum()) > 1000
    assert (follow.page == 2).all()
    # the interest carried is the clicks of the page, by category
    clicked_cat = world.products.category[out.imp_product[out.clicked]]
    by_session = np.zeros_like(batch.interest)
    np.add.at(by_session, (out.imp_answer[out.clicked], clicked_cat), 1)
    continuing = np.flatnonzero(batch.pages > 1)
    assert np.array_equal(follow.interest, by_session[continuing])
    assert np.array_equal(follow.intent, batch.intent[continuing])
    gap_s = (follow.due_us - NOW_US) / SECOND_US
    assert (gap_s >= 1).all() and (gap_s < 30 * 60).all()
    assert 20 <= np.median(gap_s) <= 180
    assert lengths.sum() == len(out.imp_ts)

    returning = Returning()
    returning.add(follow)
    assert next_batch(rng, market, returning, 50, NOW_US, 9000).page.max() == 1  # nobody is due yet
    later = int(follow.due_us.max())
    mixed = next_batch(rng, market, returning, 200, later, 9000)
    assert (mixed.page == 2).all() and len(returning) == follow.n - 200
    assert set(mixed.session.tolist()) <= set(follow.session.tolist())
    rest = next_batch(rng, market, returning, follow.n, later, 9000)
    assert (rest.page == 2).sum() == follow.n - 200 and (rest.session[rest.page == 1] >= 9000).all()


def test_same_seed_same_sessions() -> None:
    """Page-step generation draws in a fixed order: a day is the same arrays twice."""
    config = SimConfig(scale="tiny", seed=3, end_date=END_DATE)
    a, b = _first_day(config), _first_day(config)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
