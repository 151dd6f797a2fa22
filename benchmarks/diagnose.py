"""`make bench-diagnose`: the planted-cause benchmark of the merchant diagnosis over seeds and scales.

For each (scale, seed) a home is built once under `--root` (`make data features`, the event marts and the merchant
panels), then diagnosed with `explain_with_model=False`:

* every planted merchant, the 7 days before its change date vs the 7 days from it (fewer if the data ends);
* a deterministic sample of unplanted merchants (`--unplanted` per home, all at tiny), each on one of the planted
  merchants' window pairs in turn, so false alarms are counted on the same calendar (campaign days, 11.11) the
  planted merchants were diagnosed on.

A diagnosis *names* a cause when its primary cause is a merchant cause (price, rating, live, discount); market
context, `within_noise` and `no_clear_cause` name none. Precision = named causes that are the planted one / all
named causes; recall = planted merchants whose planted cause is named / planted merchants; false causes = unplanted
merchant-periods with a named cause. `rules only` is the same diagnosis without the noise gate (its strongest
merchant finding), what the diagnosis named before intervals existed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from merchant_growth.data import data_bounds, merchant_funnel_relation, query
from merchant_growth.diagnosis import diagnose
from platform_common.settings import REPO_ROOT, Settings

MERCHANT_CAUSES = {
    "price_increase",
    "price_decrease",
    "rating_drop",
    "rating_rise",
    "started_live",
    "stopped_live",
    "discount_up",
    "discount_down",
}


@dataclass
class Case:
    scale: str
    seed: int
    source: str
    merchant_id: str
    planted: str | None
    period_a: str
    period_b: str
    named: str | None  # with the noise gate
    rules_only: str | None  # strongest merchant finding, no gate
    orders_a: int
    orders_b: int


def build_home(root: Path, scale: str, seed: int, end_date: str) -> Settings:
    home = root / f"{scale}-seed{seed}"
    settings = Settings(home=home, scale=scale)
    done = (home / "merchant_growth" / "mg_merchant_forecast_features.parquet").exists() and (
        home / "merchant_panels" / "product_funnel_daily.parquet"
    ).exists()
    if not done:
        # a make calling this passes its command-line variables down in MAKEFLAGS: drop them, name the home
        env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
        env["SHOPRANK_HOME"] = str(home)
        cmd = ["make", "--no-print-directory", "data", "features", f"SCALE={scale}", f"SEED={seed}"]
        cmd += [f"END_DATE={end_date}", f"SHOPRANK_HOME={home}"]
        subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return settings


def windows(change: date, start: date, end: date) -> tuple[tuple[date, date], tuple[date, date]]:
    a = (max(start, change - timedelta(days=7)), change - timedelta(days=1))
    return a, (change, min(end, change + timedelta(days=6)))


def run_home(settings: Settings, scale: str, seed: int, n_unplanted: int, source: str) -> list[Case]:
    planted = json.loads((settings.oracle_dir / "planted_causes.json").read_text())
    start, end = data_bounds(settings, source)  # type: ignore[arg-type]
    pairs = [windows(date.fromisoformat(p["change_date"]), start, end) for p in planted]
    merchants = query(f"select distinct merchant_id from {merchant_funnel_relation(settings, source)} order by 1")  # type: ignore[arg-type]
    planted_ids = {p["merchant_id"] for p in planted}
    others = [m for m in merchants["merchant_id"] if m not in planted_ids]
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(others, size=min(n_unplanted, len(others)), replace=False).tolist())
    jobs = [(p["merchant_id"], p["cause"], pairs[i]) for i, p in enumerate(planted)]
    jobs += [(m, None, pairs[i % len(pairs)]) for i, m in enumerate(sample)]
    cases = []
    for merchant_id, cause, (a, b) in jobs:
        report = diagnose(merchant_id, a, b, settings, explain_with_model=False, funnel_source=source)  # type: ignore[arg-type]
        named = report.primary_cause if report.primary_cause in MERCHANT_CAUSES else None
        rules = next((f.cause for f in report.findings if f.kind == "merchant"), None)
        cases.append(
            Case(
                scale,
                seed,
                source,
                merchant_id,
                cause,
                f"{a[0]}:{a[1]}",
                f"{b[0]}:{b[1]}",
                named,
                rules,
                report.funnel_a.orders,
                report.funnel_b.orders,
            )
        )
        print(
            f"{scale} seed {seed} {source:<6} {merchant_id} planted {cause or '-':<15} named {named or '-':<15} "
            f"rules {rules or '-':<15} orders {report.funnel_a.orders}/{report.funnel_b.orders}",
            file=sys.stderr,
        )
    return cases


def scores(cases: list[Case], field: str) -> dict[str, float | int]:
    planted = [c for c in cases if c.planted]
    unplanted = [c for c in cases if not c.planted]
    named = [c for c in cases if getattr(c, field)]
    correct = [c for c in planted if getattr(c, field) == c.planted]
    false_unplanted = [c for c in unplanted if getattr(c, field)]
    return {
        "planted": len(planted),
        "unplanted": len(unplanted),
        "named": len(named),
        "correct": len(correct),
        "precision": len(correct) / len(named) if named else float("nan"),
        "recall": len(correct) / len(planted) if planted else float("nan"),
        "false_causes": len(false_unplanted),
        "false_rate": len(false_unplanted) / len(unplanted) if unplanted else float("nan"),
    }


def table(cases: list[Case]) -> str:
    lines = [
        "| scale | funnel source | seeds | planted | unplanted merchant-periods | decision | named | precision | "
        "recall | false causes (unplanted) | median orders per planted merchant-week (a / b) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scale in dict.fromkeys(c.scale for c in cases):
        for source in dict.fromkeys(c.source for c in cases):
            group = [c for c in cases if c.scale == scale and c.source == source]
            if not group:
                continue
            seeds = ", ".join(str(s) for s in sorted({c.seed for c in group}))
            planted = [c for c in group if c.planted]
            med_a = float(np.median([c.orders_a for c in planted])) if planted else float("nan")
            med_b = float(np.median([c.orders_b for c in planted])) if planted else float("nan")
            for label, field in (("intervals + noise gate", "named"), ("rules only (no gate)", "rules_only")):
                s = scores(group, field)
                lines.append(
                    f"| {scale} | {source} | {seeds} | {s['planted']} | {s['unplanted']} | {label} | {s['named']} | "
                    f"{s['precision']:.2f} | {s['recall']:.2f} ({s['correct']}/{s['planted']}) | "
                    f"{s['false_causes']} ({s['false_rate']:.1%}) | {med_a:.0f} / {med_b:.0f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("SHOPRANK_HOME", ".state")) / "bench-diagnose")
    parser.add_argument("--scales", default="tiny,small")
    parser.add_argument("--seeds", default="7,42,123")
    parser.add_argument("--sources", default="panel", help="panel, events or both (comma-separated)")
    parser.add_argument("--unplanted", type=int, default=40, help="unplanted merchants diagnosed per home")
    parser.add_argument("--end-date", default="2026-11-21")
    parser.add_argument("--json", type=Path, default=None, help="also write every case here")
    args = parser.parse_args(argv)
    cases: list[Case] = []
    for scale in args.scales.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            settings = build_home(args.root, scale, seed, args.end_date)
            for source in args.sources.split(","):
                cases += run_home(settings, scale, seed, args.unplanted, source)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cases], indent=1))
    print(table(cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
