"""The Prometheus alert rules of the service (serving/alert_rules.yml) fire when they should and only then.

promtool is not a dependency of the project, so this test evaluates each rule's expression with a tiny PromQL
evaluator written for exactly the forms the rules use: selectors with `=`/`!=` matchers, `rate(x[d])`,
`sum`/`min`/`max` with an optional `by (...)`, `scalar(...)`, `/` between vectors with the same labels or with a
scalar, `histogram_quantile` (Prometheus' linear interpolation inside a bucket), and `> == <` against a number.
It reads the same cases as serving/alert_rules_test.yml (promtool's unit-test format, also checked with
`promtool test rules` when it is installed): for each, the set of label sets that fire must equal the expected
alerts'. The inputs are linear series held for the whole test, so a rule's `for:` is met whenever its
expression holds at the evaluation time (that is the part this evaluator does not model).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVING = Path(__file__).resolve().parents[2] / "serving"
RULES = yaml.safe_load((SERVING / "alert_rules.yml").read_text())["groups"][0]["rules"]
CASES = yaml.safe_load((SERVING / "alert_rules_test.yml").read_text())

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(==|!=|[(){}\[\],/<>=])|(\"[^\"]*\"))")


def parse_series(spec: str) -> tuple[str, Labels]:
    m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})?", spec)
    assert m, spec
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
    return m.group(1), frozenset(labels.items())


def expand(values: str, minute: float) -> float:
    """promtool's `a+bxn` / `axn` notation at `minute` (samples every minute)."""
    m = re.fullmatch(r"(-?[\d.]+)(?:\+([\d.]+))?x(\d+)", values)
    assert m, values
    return float(m.group(1)) + float(m.group(2) or 0) * minute


class Evaluator:
    def __init__(self, series: list[dict[str, str]], minute: float) -> None:
        self.series = [(*parse_series(s["series"]), s["values"]) for s in series]
        self.minute = minute

    def __call__(self, expr: str) -> Vector | float:
        self.tokens = [next(t for t in m.groups() if t is not None) for m in TOKEN.finditer(expr)]
        assert "".join(self.tokens) == re.sub(r"\s+", "", expr), f"unsupported syntax in {expr}"
        self.i = 0
        value = self.comparison()
        assert self.i == len(self.tokens), f"trailing tokens in {expr}"
        return value

    # -- recursive descent --------------------------------------------------------------------------------
    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.i]
        assert expected is None or token == expected, f"expected {expected}, got {token}"
        self.i += 1
        return token

    def comparison(self) -> Vector | float:
        left = self.division()
        if self.peek() in (">", "<", "=="):
            op = self.take()
            bound = float(self.take())
            assert isinstance(left, dict)
            test = {">": lambda v: v > bound, "<": lambda v: v < bound, "==": lambda v: v == bound}[op]
            return {k: v for k, v in left.items() if test(v)}
        return left

    def division(self) -> Vector | float:
        left = self.factor()
        while self.peek() == "/":
            self.take()
            right = self.factor()
            left = divide(left, right)
        return left

    def factor(self) -> Vector | float:
        token = self.take()
        if token == "(":
            value = self.comparison()
            self.take(")")
            return value
        if re.fullmatch(r"\d+(?:\.\d+)?", token):
            return float(token)
        if token in ("sum", "min", "max"):
            by: tuple[str, ...] | None = None
            if self.peek() == "by":
                self.take()
                by = self.names()
            self.take("(")
            inner = self.comparison()
            self.take(")")
            assert isinstance(inner, dict)
            return aggregate(token, inner, by)
        if token == "rate":
            self.take("(")
            name, matchers = self.selector(self.take())
            self.take("[")
            window = self.take()
            unit = self.take()
            assert unit == "m", "durations in minutes only"
            self.take("]")
            self.take(")")
            seconds = float(window) * 60
            now, then = (
                self.select(name, matchers, self.minute),
                self.select(name, matchers, self.minute - seconds / 60),
            )
            return {k: (now[k] - then[k]) / seconds for k in now}
        if token == "scalar":
            self.take("(")
            inner = self.comparison()
            self.take(")")
            assert isinstance(inner, dict)
            return next(iter(inner.values())) if len(inner) == 1 else math.nan
        if token == "histogram_quantile":
            self.take("(")
            q = float(self.take())
            self.take(",")
            buckets = self.comparison()
            self.take(")")
            assert isinstance(buckets, dict)
            return histogram_quantile(q, buckets)
        name, matchers = self.selector(token)
        return self.select(name, matchers, self.minute)

    def names(self) -> tuple[str, ...]:
        self.take("(")
        out = [self.take()]
        while self.peek() == ",":
            self.take()
            out.append(self.take())
        self.take(")")
        return tuple(out)

    def selector(self, name: str) -> tuple[str, list[tuple[str, str, str]]]:
        matchers = []
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                label, op, value = self.take(), self.take(), self.take().strip('"')
                matchers.append((label, op, value))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        return name, matchers

    def select(self, name: str, matchers: list[tuple[str, str, str]], minute: float) -> Vector:
        out = {}
        for metric, labels, values in self.series:
            d = dict(labels)
            if metric == name and all((d.get(k, "") == v) == (op == "=") for k, op, v in matchers):
                out[labels] = expand(values, minute)
        return out


def divide(left: Vector | float, right: Vector | float) -> Vector | float:
    if isinstance(right, float):
        assert isinstance(left, dict)
        return {k: v / right for k, v in left.items()}
    assert isinstance(left, dict)
    return {k: v / right[k] for k, v in left.items() if k in right}  # one-to-one on identical labels


def aggregate(op: str, vector: Vector, by: tuple[str, ...] | None) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        key = frozenset((k, v) for k, v in labels if by is not None and k in by)
        groups.setdefault(key, []).append(value)
    fn: Any = {"sum": sum, "min": min, "max": max}[op]
    return {k: float(fn(v)) for k, v in groups.items()}


def histogram_quantile(q: float, buckets: Vector) -> Vector:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, count in buckets.items():
        d = dict(labels)
        le = float(d.pop("le"))
        groups.setdefault(frozenset(d.items()), []).append((le, count))
    out = {}
    for key, pairs in groups.items():
        pairs.sort()
        rank = q * pairs[-1][1]
        lower, below = 0.0, 0.0
        for le, cumulative in pairs:
            if cumulative >= rank:
                if math.isinf(le):
                    out[key] = lower  # Prometheus answers the highest finite bound
                else:
                    out[key] = lower + (le - lower) * (rank - below) / (cumulative - below)
                break
            lower, below = le, cumulative
    return out


CHECKS = [
    (case_no, check["alertname"], check["eval_time"], [a["exp_labels"] for a in check["exp_alerts"]])
    for case_no, case in enumerate(CASES["tests"])
    for check in case["alert_rule_test"]
]


@pytest.mark.parametrize(
    ("case_no", "alert", "eval_time", "expected"), CHECKS, ids=[f"{c[1]}-case{c[0]}" for c in CHECKS]
)
def test_rule_fires_exactly_when_expected(case_no: int, alert: str, eval_time: str, expected: list[dict]) -> None:
    rule = next(r for r in RULES if r["alert"] == alert)
    minute = float(eval_time.rstrip("m"))
    result = Evaluator(CASES["tests"][case_no]["input_series"], minute)(rule["expr"])
    assert isinstance(result, dict)
    fired = sorted(sorted({**dict(labels), **rule["labels"]}.items()) for labels in result)
    assert fired == sorted(sorted(e.items()) for e in expected)


def test_every_rule_fires_in_one_case_and_stays_silent_in_another() -> None:
    fires = {alert for _, alert, _, exp in CHECKS if exp}
    silent = {alert for _, alert, _, exp in CHECKS if not exp}
    names = {r["alert"] for r in RULES}
    assert fires == names
    assert silent == names


def test_the_evaluator_reads_a_threshold_change() -> None:
    """The evaluator is not a rubber stamp: the error rate of the first case is 4.76%, over 1% and under 10%."""
    series = CASES["tests"][0]["input_series"]
    base = next(r for r in RULES if r["alert"] == "ShoprankErrorRate")["expr"]
    assert Evaluator(series, 20)(base) == {frozenset(): pytest.approx(30 / 630)}
    assert Evaluator(series, 20)(base.replace("> 0.01", "> 0.1")) == {}
    latency = next(r for r in RULES if r["alert"] == "ShoprankLatencyP99")["expr"]
    assert Evaluator(series, 20)(latency.replace(" > 0.1", "")) == {frozenset(): pytest.approx(0.45)}
