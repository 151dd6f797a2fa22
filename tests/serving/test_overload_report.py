"""The overload phase of `make bench-serve`: 503s counted apart from other errors, accepted latency only, and
the target judged on both (benchmarks/loadgen.py, benchmarks/serving.py)."""

from __future__ import annotations

from collections import Counter

from benchmarks.loadgen import PhaseResult
from benchmarks.serving_report import overload_rows, overload_section
from serving.guard import request_start_age


def _phase(statuses: dict[int, int], errors: dict[str, int], latencies: list[float]) -> dict:
    r = PhaseResult("overload: 2x max = 400 rps", 400.0, 10.0, latencies=latencies, statuses=Counter(statuses))
    r.errors = Counter(errors)
    r.shed_latencies = [0.002] * statuses.get(503, 0)
    return r.summary() | {"overload_factor": 2.0, "measured_max_rps": 200.0, "server_cpu_ms_per_request": 1.0}


def test_summary_separates_shed_from_other_errors() -> None:
    s = _phase({200: 2000, 503: 1900, 500: 3}, {"TimeoutError": 2}, [0.010] * 2000)
    assert (s["sent"], s["ok"], s["errors"], s["shed"], s["other_errors"]) == (3905, 2000, 1905, 1900, 5)
    assert s["shed_share"] == round(1900 / 3905, 4)
    assert s["throughput_rps"] == 200.0  # goodput: successful answers per second
    assert s["p99_ms"] == 10.0 and s["shed_p99_ms"] == 2.0


def test_the_target_needs_the_p99_within_2x_and_no_other_error() -> None:
    fixed100 = {"p99_ms": 10.0}
    good = _phase({200: 2000, 503: 2000}, {}, [0.019] * 2000)
    assert overload_rows(good, fixed100)[0].endswith("| 1.90x | met |")
    slow = _phase({200: 2000, 503: 2000}, {}, [0.021] * 2000)
    assert overload_rows(slow, fixed100)[0].endswith("| 2.10x | **not met** |")
    broken = _phase({200: 2000, 503: 2000}, {"ServerDisconnectedError": 1}, [0.010] * 2000)
    assert overload_rows(broken, fixed100)[0].endswith("| 1.00x | **not met** |")
    table = "\n".join(overload_section(good, fixed100, slow | {"stamped": False}))
    stamped = "| the service alone, X-Request-Start stamped (as by a proxy) | 400 | 200.0 | 2000 (50.0%) | 0 |"
    assert f"{stamped} 19.0 | 19.0 | 10.0 | 2.0 |" in table
    assert (
        "| the service alone, no stamp (its own clock) | 400 | 200.0 | 2000 (50.0%) | 0 | 21.0 | 21.0 | 10.0 | 2.0 |"
        in table
    )
    assert overload_rows(None, fixed100) == [] and overload_section(None, fixed100) == []


def test_the_haproxy_phase_is_judged_against_the_direct_p99_and_shown_beside_its_own() -> None:
    fixed100, proxy100 = {"p99_ms": 10.0}, {"p99_ms": 8.0}
    meta = {"max_conn": 1, "queue_timeout_ms": 5, "cpus": [1], "requests": 4000, "shed_by_proxy": 2000, "max_queue": 9}
    proxied = _phase({200: 2000, 503: 2000}, {}, [0.012] * 2000) | {"proxy": meta}
    row = overload_rows(proxied, fixed100, "behind HAProxy")[0]
    assert "2x the max rate, behind HAProxy" in row and row.endswith("| 1.20x | met |")
    good = _phase({200: 2000, 503: 2000}, {}, [0.019] * 2000)
    table = "\n".join(overload_section(good, fixed100, None, proxied, proxy100))
    assert (
        "| HAProxy in front: 1 in the service at once, 503 after 5 ms queued | 400 | 200.0 | 2000 (50.0%) | 0 |"
        in table
    )
    assert "| 12.0 | 12.0 | 8.0 | 2.0 |" in table  # its p99 beside the p99 at 100 req/s through the same HAProxy
    assert "2000 of the phase's 4000 requests; longest queue 9" in table


def test_the_closed_loop_waits_retry_after_when_shed() -> None:
    """Without the wait, 4 connections answered 503 in well under a millisecond would send thousands."""
    import asyncio

    from aiohttp import web

    from benchmarks.loadgen import max_rate

    stamps: list[float | None] = []

    async def scenario() -> PhaseResult:
        async def shed(request: web.Request) -> web.Response:
            await request.read()
            stamps.append(request_start_age(request.headers.get("X-Request-Start", "").encode()))
            return web.json_response({"reason": "in_flight"}, status=503, headers={"Retry-After": "1"})

        app = web.Application()
        app.router.add_post("/rank", shed)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await max_rate(f"http://127.0.0.1:{port}", [b"{}"], seconds=1.5, concurrency=4)
        finally:
            await runner.cleanup()

    result = asyncio.run(scenario())
    assert result.shed == result.sent and result.ok == 0 and result.other_errors == 0
    assert 4 <= result.sent <= 12, result.sent  # one try per connection per second, not a storm
    assert result.seconds < 3  # the waits are cut at the end of the phase
    # each request carries its due time as a proxy's X-Request-Start, which the service's admission reads
    assert len(stamps) == result.sent and all(a is not None and a < 1.0 for a in stamps), stamps


def test_core_lists_are_parsed_and_checked_against_this_machine() -> None:
    import os

    import pytest
    import typer

    from benchmarks.serving import parse_cpus

    have = sorted(os.sched_getaffinity(0))
    assert parse_cpus("", "--server-cpus") == ()
    assert parse_cpus(f"{have[0]}", "--server-cpus") == (have[0],)
    assert parse_cpus(f"{have[0]}-{have[-1]}", "--server-cpus") == tuple(have)
    with pytest.raises(typer.BadParameter, match="not a list of cores"):
        parse_cpus("zero", "--server-cpus")
    with pytest.raises(typer.BadParameter, match="not available here"):
        parse_cpus(str(max(have) + 64), "--client-cpus")
