"""Exact decomposition of a GMV change into traffic, CTR, CVR and average order value.

GMV per day is a product of four funnel factors:

    GMV/day = (impressions / day) x (clicks / impressions) x (orders / clicks) x (GMV / orders)
            =  traffic            x  CTR                  x  CVR              x  AOV

The change between a baseline period `a` and a period `b` is split with the Shapley value of the factors:
factor k gets the average, over every order in which the factors can be switched from their `a` to their `b`
value, of the change in GMV/day when k is switched. For a product of n factors this is

    phi_k = sum over S subset of the other factors  |S|! (n-|S|-1)! / n!  x  prod_{j in S} b_j
            x prod_{j not in S, j != k} a_j  x  (b_k - a_k)

and the parts add up to prod(b) - prod(a) exactly (the Shapley efficiency property). Every computation is done
in rational arithmetic (`fractions.Fraction`, exact from the counts and the float GMV), so the sum is exact;
floats are produced once at the end. Unlike the log-mean Divisia index (LMDI), which needs every factor to be
positive in both periods, Shapley copes with zeros (a period without orders).

A ratio without a denominator (CTR without impressions, CVR without clicks, AOV without orders) takes the
other period's value, so it gets no credit: its numerator is zero too and the factor before it is already 0,
so GMV/day is unchanged by the substitution. Undefined in both periods, it is 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

from merchant_growth.schemas import FACTORS, Contributions, FunnelTotals


@dataclass(frozen=True)
class FunnelCounts:
    """Funnel counts of one segment in one period of `days` days. GMV is held exactly (a float converts to the
    Fraction of its exact binary value), so segments add up to their total without rounding."""

    impressions: int
    clicks: int
    orders: int
    gmv: Fraction
    days: int

    def __post_init__(self) -> None:
        if isinstance(self.gmv, float) and not math.isfinite(self.gmv):
            raise ValueError(f"GMV must be finite: {self}")
        object.__setattr__(self, "gmv", Fraction(self.gmv))
        if self.days <= 0:
            raise ValueError("a period has at least one day")
        if min(self.impressions, self.clicks, self.orders) < 0 or self.gmv < 0:
            raise ValueError(f"funnel counts must be non-negative and finite: {self}")
        if self.clicks > self.impressions or (self.orders > 0 and self.clicks == 0):
            raise ValueError(f"funnel counts break clicks <= impressions or orders => clicks: {self}")
        if self.orders == 0 and self.gmv != 0:
            raise ValueError(f"GMV without orders: {self}")

    def __add__(self, other: FunnelCounts) -> FunnelCounts:
        if self.days != other.days:
            raise ValueError("segments of one period share its days")
        return FunnelCounts(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.orders + other.orders,
            self.gmv + other.gmv,
            self.days,
        )

    @staticmethod
    def zero(days: int) -> FunnelCounts:
        return FunnelCounts(0, 0, 0, Fraction(0), days)

    @staticmethod
    def from_rows(
        impressions: Iterable[int], clicks: Iterable[int], orders: Iterable[int], gmv: Iterable[float], days: int
    ) -> FunnelCounts:
        """Sum of funnel rows (e.g. product x day x surface), GMV summed exactly."""
        return FunnelCounts(
            int(sum(int(x) for x in impressions)),
            int(sum(int(x) for x in clicks)),
            int(sum(int(x) for x in orders)),
            sum((Fraction(float(x)) for x in gmv), Fraction(0)),
            days,
        )

    def gmv_per_day(self) -> Fraction:
        return self.gmv / self.days

    def ratios(self) -> tuple[Fraction | None, ...]:
        """(traffic, CTR, CVR, AOV); None where the denominator is 0."""
        return (
            Fraction(self.impressions, self.days),
            Fraction(self.clicks, self.impressions) if self.impressions else None,
            Fraction(self.orders, self.clicks) if self.clicks else None,
            self.gmv / self.orders if self.orders else None,
        )

    def totals(self) -> FunnelTotals:
        def rate(num: float | Fraction, den: int) -> float:
            return float(Fraction(num) / den) if den else 0.0

        return FunnelTotals(
            days=self.days,
            impressions=self.impressions,
            clicks=self.clicks,
            orders=self.orders,
            gmv=float(self.gmv),
            impressions_per_day=self.impressions / self.days,
            ctr=rate(self.clicks, self.impressions),
            cvr=rate(self.orders, self.clicks),
            aov=rate(self.gmv, self.orders),
            gmv_per_day=float(self.gmv / self.days),
        )


def shapley_product(a: Sequence[Fraction], b: Sequence[Fraction]) -> list[Fraction]:
    """Shapley attribution of prod(b) - prod(a) to each factor; exact, and the parts sum to the change."""
    n = len(a)
    if n != len(b) or n == 0:
        raise ValueError("need the same, non-zero number of factors in both periods")
    weights = [Fraction(math.factorial(s) * math.factorial(n - s - 1), math.factorial(n)) for s in range(n)]
    out: list[Fraction] = []
    for k in range(n):
        others = [j for j in range(n) if j != k]
        phi = Fraction(0)
        for size in range(n):
            for subset in combinations(others, size):
                term = Fraction(1)
                for j in others:
                    term *= b[j] if j in subset else a[j]
                phi += weights[size] * term
        out.append(phi * (b[k] - a[k]))
    return out


def funnel_factors(a: FunnelCounts, b: FunnelCounts) -> tuple[list[Fraction], list[Fraction]]:
    """The four factors of both periods with undefined ratios filled in (see the module docstring)."""
    ra, rb = a.ratios(), b.ratios()
    fa: list[Fraction] = []
    fb: list[Fraction] = []
    for x, y in zip(ra, rb, strict=True):
        fa.append(x if x is not None else (y if y is not None else Fraction(0)))
        fb.append(y if y is not None else (x if x is not None else Fraction(0)))
    return fa, fb


@dataclass(frozen=True)
class ExactChange:
    """GMV/day of both periods and the exact Shapley parts of its change, in the order of FACTORS."""

    gmv_per_day_a: Fraction
    gmv_per_day_b: Fraction
    parts: tuple[Fraction, ...]

    @property
    def delta(self) -> Fraction:
        return self.gmv_per_day_b - self.gmv_per_day_a

    def __add__(self, other: ExactChange) -> ExactChange:
        return ExactChange(
            self.gmv_per_day_a + other.gmv_per_day_a,
            self.gmv_per_day_b + other.gmv_per_day_b,
            tuple(x + y for x, y in zip(self.parts, other.parts, strict=True)),
        )

    def contributions(self) -> Contributions:
        return Contributions(**{name: float(part) for name, part in zip(FACTORS, self.parts, strict=True)})


def decompose(a: FunnelCounts, b: FunnelCounts) -> ExactChange:
    """Exact decomposition of GMV/day from period a to period b into traffic, CTR, CVR and AOV."""
    fa, fb = funnel_factors(a, b)
    gmv_a, gmv_b = a.gmv_per_day(), b.gmv_per_day()
    # The identities hold by construction; a failure here means inconsistent counts, never rounding.
    if math.prod(fa) != gmv_a or math.prod(fb) != gmv_b:
        raise ArithmeticError(f"funnel factors do not multiply back to GMV/day: {a} -> {b}")
    parts = tuple(shapley_product(fa, fb))
    if sum(parts) != gmv_b - gmv_a:
        raise ArithmeticError("Shapley parts do not add up to the change")  # pragma: no cover (a theorem)
    return ExactChange(gmv_a, gmv_b, parts)


def decompose_segments(
    a: dict[str, FunnelCounts], b: dict[str, FunnelCounts], days_a: int, days_b: int
) -> dict[str, ExactChange]:
    """Each segment (surface, product) decomposed on its own; the segment changes add up to the total change."""
    return {
        key: decompose(a.get(key, FunnelCounts.zero(days_a)), b.get(key, FunnelCounts.zero(days_b)))
        for key in sorted(set(a) | set(b))
    }


def float_residual(change: ExactChange) -> float:
    """Float delta minus the float sum of the float parts: rounding only (a few ulps)."""
    return float(change.delta) - math.fsum(float(p) for p in change.parts)
