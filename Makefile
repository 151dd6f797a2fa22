# shoprank: every target works from a fresh clone and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SCALE ?= small
PORT ?= 3000
SEED ?= 42
END_DATE ?=
HISTORY_DAYS ?=
INCIDENT ?=

export SHOPRANK_HOME ?= $(CURDIR)/.state
export SHOPRANK_SCALE := $(SCALE)
export BENTOML_DO_NOT_TRACK := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DBT_TARGET_PATH := $(SHOPRANK_HOME)/dbt/target
export DBT_LOG_PATH := $(SHOPRANK_HOME)/dbt/logs
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

# uv is bootstrapped with pip on a machine that lacks it, and is also a dev dependency, so that make run
# from inside the environment (the tests do) finds it as well.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# The pipeline's programs run in Python's optimized mode. Feast wraps its classes in typeguard's @typechecked, which
# parses each decorated module's source again at import: 4 of the 6 CPU seconds of `import feast` on these
# machines, paid by every command that touches Feast (the tiny pipeline: 0.84x wall, docs/benchmarks.md). Under -O that runtime
# check is off; mypy checks the feature repo's types statically (make lint), and the code never relies on
# `assert` for a check a user could trip. pytest itself runs unoptimized (TEST_RUN): its helpers' asserts count.
TEST_RUN := $(UV) run --frozen --no-sync
RUN := PYTHONOPTIMIZE=1 $(TEST_RUN)
VENV_STAMP := .venv/.synced-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)
FEAST_YAML = $$($(RUN) python -m platform_common.feast_config)
FEAST = cd feature_repo && FEAST_FS_YAML_FILE_PATH=$(FEAST_YAML) $(RUN) feast

.PHONY: help install install-spark data features apply materialize train promote rollback history evaluate skew-check serve status demo test test-spark test-fast lint format clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# uv compiles bytecode for the plain interpreter only; the optimized one (RUN above) gets its own .opt-1.pyc here,
# or it would compile every module it imports from source on machines that set PYTHONDONTWRITEBYTECODE (these do).
# A file that does not compile (a vendored Python 2 example in some wheel) is skipped, as uv skips it.
OPT_BYTECODE = @.venv/bin/python -O -m compileall -q -j 0 \
	"$$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true

$(VENV_STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --compile-bytecode
	$(OPT_BYTECODE)
	@rm -f .venv/.synced-*; touch $@

install: $(VENV_STAMP) ## create .venv from uv.lock

# The Spark profile's extra (pyspark, dbt-spark[session], feast[spark]) on top of the default environment, only
# for the targets that use it. `make install` syncs without it and its `rm` drops this stamp too, so the next
# Spark target re-syncs.
SPARK_STAMP := .venv/.synced-spark-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)
$(SPARK_STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --compile-bytecode --extra spark
	$(OPT_BYTECODE)
	@rm -f .venv/.synced-*; touch $(VENV_STAMP) $@

install-spark: $(SPARK_STAMP) ## create .venv from uv.lock with the Spark extra (Java 17 needed)

data: $(VENV_STAMP) ## simulate the marketplace into $SHOPRANK_HOME/raw (SCALE=tiny|small|medium|large, END_DATE=YYYY-MM-DD, HISTORY_DAYS=<days of history>, INCIDENT=kind[:target]@day)
	$(RUN) python -m simulator generate --scale $(SCALE) --seed $(SEED) $(if $(END_DATE),--end-date $(END_DATE)) $(if $(HISTORY_DAYS),--days $(HISTORY_DAYS)) $(foreach i,$(INCIDENT),--incident $(i))

# The offline engine (platform_common/settings.py): duckdb (default) or spark, checked here at the edge of make.
export SHOPRANK_OFFLINE_ENGINE ?= duckdb
ifeq ($(filter $(SHOPRANK_OFFLINE_ENGINE),duckdb spark),)
$(error SHOPRANK_OFFLINE_ENGINE must be duckdb or spark, not '$(SHOPRANK_OFFLINE_ENGINE)')
endif
ENGINE_STAMP := $(if $(filter spark,$(SHOPRANK_OFFLINE_ENGINE)),$(SPARK_STAMP),$(VENV_STAMP))

features: $(ENGINE_STAMP) ## dbt build: staging, quarantine, feature marts, tests; exports parquet marts (SHOPRANK_OFFLINE_ENGINE=duckdb|spark)
ifeq ($(SHOPRANK_OFFLINE_ENGINE),spark)
	@# dbt's unit tests (models/*.yml) give their fixtures in DuckDB's literal syntax: they run on the DuckDB build.
	cd transforms && $(RUN) dbt build --profiles-dir . --target spark --quiet --fail-fast --exclude "test_type:unit"
	$(RUN) python -m platform_common.spark_marts export
else
	cd transforms && $(RUN) dbt build --profiles-dir . --quiet --fail-fast
endif

apply: $(ENGINE_STAMP) ## feast apply: register entities, sources, feature views, feature services
	$(FEAST) apply

materialize: $(ENGINE_STAMP) ## feast materialize-incremental up to now into the online store
	$(FEAST) materialize-incremental $$(date -u +%Y-%m-%dT%H:%M:%S)

train: $(ENGINE_STAMP) ## point-in-time training set from Feast, XGBoost, log and register in MLflow (FEATURE_SERVICE=ctr_model_v2_stream: with the stream features; MAX_NEGATIVES=<n>: non-clicked rows kept)
	$(if $(FEATURE_SERVICE),SHOPRANK_TRAIN_FEATURE_SERVICE=$(FEATURE_SERVICE)) $(RUN) python -m training train $(if $(MAX_NEGATIVES),--max-negatives $(MAX_NEGATIVES))

promote: $(VENV_STAMP) ## gate the newest version vs the champion on the same rows (FORCE=1 for emergencies; EXPERIMENT=<id> [ONLINE_RULE=non-inferior]: on online evidence too)
	$(RUN) python -m training promote $(if $(FORCE),--force) $(if $(VERSION),--version $(VERSION)) $(if $(EXPERIMENT),--experiment "$(EXPERIMENT)") $(if $(ONLINE_RULE),--online-rule "$(ONLINE_RULE)")

rollback: $(VENV_STAMP) ## restore the previous champion (audited)
	$(RUN) python -m training rollback

history: $(VENV_STAMP) ## every promotion, refusal and rollback, oldest first
	@$(RUN) python -m training history

serve: $(VENV_STAMP) ## serve the champion with BentoML on PORT (foreground)
	$(RUN) bentoml serve serving.service:Ranker --host 0.0.0.0 --port $(PORT) --working-dir .

evaluate: $(VENV_STAMP) ## champion vs oracle: metrics, slices, ranking, plots, HTML report (logged to MLflow)
	$(RUN) python -m training evaluate

skew-check: $(ENGINE_STAMP) ## online vs offline features (exact) and served vs offline scores (1e-6); non-zero on any mismatch
	$(RUN) python -m serving.skew_check

status: $(VENV_STAMP) ## JSON: tracking URI, champions and test metrics, feature views and freshness
	@$(RUN) python -m training status

# The stream model (ctr_model_v2_stream) is gated against the batch champion on the same rows: promoted if it wins,
# kept out (exit 0, "NOT PROMOTED" and why) if not; serving.demo's stream step reports which it serves.
demo: $(VENV_STAMP) ## everything from nothing (batch model, then the stream model through the gate), one real /rank, then a new shopper's clicks through the stream processor into the next /rank
	$(MAKE) data features apply stream-backfill materialize train promote
	$(MAKE) train promote FEATURE_SERVICE=ctr_model_v2_stream
	$(RUN) python -m serving.demo

# Two workers (tests/conftest.py: one group per platform, each built once): one process keeps one core busy.
TEST_WORKERS ?= 2
test: $(VENV_STAMP) install-haproxy ## the test suite (unit, data, model behaviour, end to end at SCALE=tiny), TEST_WORKERS=2 processes
	$(TEST_RUN) pytest -n $(TEST_WORKERS)

# Issue 15: the offline compute on Spark in local mode (Java 17). Not part of `make test`: CI runs it on its own.
test-spark: $(SPARK_STAMP) ## the pipeline end to end at SCALE=tiny with the dbt build on Spark, and DuckDB-vs-Spark mart parity
	@# The Spark build with its ~360 data tests takes longer than the suite's 900 s per-test ceiling on 2 shared cores.
	$(TEST_RUN) pytest tests/spark -p no:cacheprovider --timeout 3600

test-fast: $(VENV_STAMP) ## the inner loop: no whole platform, no real dbt or Feast build (pytest -m "not e2e and not integration")
	$(TEST_RUN) pytest -m "not e2e and not integration"

lint: $(VENV_STAMP) ## ruff lint and format check, the type checker (mypy), the SQL linter (sqlfluff)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) sqlfluff lint transforms/models transforms/macros transforms/tests

format: $(VENV_STAMP) ## ruff fix and format
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

clean: ## delete all generated state ($SHOPRANK_HOME)
	rm -rf "$(SHOPRANK_HOME)"

# --- Beyond one machine: the prod profile (SHOPRANK_PROFILE=prod; docs/beyond_one_machine.md) ---------------
.PHONY: prod-check prod-drop test-prod bench-materialize bench-train

prod-check: $(VENV_STAMP) ## prod profile: Redis and PostgreSQL answer; creates this deployment's database
	SHOPRANK_PROFILE=prod $(RUN) python -m platform_common.connections check

prod-drop: $(VENV_STAMP) ## prod profile: drop this deployment's database (SHOPRANK_PG_DATABASE) and Redis keys
	SHOPRANK_PROFILE=prod $(RUN) python -m platform_common.connections drop

test-prod: $(VENV_STAMP) ## the pipeline end to end under SHOPRANK_PROFILE=prod on real Redis + PostgreSQL, faults
	$(TEST_RUN) pytest tests/prod

bench-materialize: $(VENV_STAMP) ## rows/s into SQLite and Redis: Feast's default engine vs the fast one (docs/benchmarks.md)
	@test -f "$(SHOPRANK_HOME)/marts/user_features.parquet" || $(MAKE) --no-print-directory data features
	$(RUN) python -m benchmarks.materialize

# Issue 14: the point-in-time join (Feast's, the ASOF-join plugin, a hand-written ASOF join), then training
# (in memory vs batched), on the same state folder and the same rows.
# Issue 15: TRAIN_PATHS=batched,spark adds the Spark engine's training (Feast's Spark store, xgboost.spark) on the same
# marts; the join benchmark is DuckDB's and is skipped when only training paths are asked for (TRAIN_PATHS set).
TRAIN_PATHS ?=
bench-train: $(if $(findstring spark,$(TRAIN_PATHS)),$(SPARK_STAMP),$(VENV_STAMP)) ## point-in-time join and training: time, peak RSS, test AUC, side by side (TRAIN_PATHS=in_memory,batched,spark; TRAIN_HOMES="<home> ...": several sizes, PIT_PATHS, PIT_ROUNDS; docs/benchmarks.md)
	@$(foreach h,$(or $(TRAIN_HOMES),$(SHOPRANK_HOME)),test -f "$(h)/feast/registry.db" || SHOPRANK_HOME="$(h)" SHOPRANK_OFFLINE_ENGINE=duckdb $(MAKE) --no-print-directory data features apply;)
	$(if $(TRAIN_PATHS),,$(foreach h,$(or $(TRAIN_HOMES),$(SHOPRANK_HOME)),$(RUN) python -m benchmarks.point_in_time --home "$(h)" $(if $(PIT_PATHS),--paths $(PIT_PATHS)) $(if $(PIT_ROUNDS),--rounds $(PIT_ROUNDS)) &&) true)
	$(RUN) python -m benchmarks.train $(foreach h,$(or $(TRAIN_HOMES),$(SHOPRANK_HOME)),--home "$(h)") $(if $(TRAIN_PATHS),--paths $(TRAIN_PATHS))

# --- merchant growth: GMV diagnostics and forecasts (docs/merchant_growth.md) ------------------------------
MERCHANT ?=
PERIOD_A ?=
PERIOD_B ?=

.PHONY: diagnose forecast bench-diagnose

diagnose: $(VENV_STAMP) ## HTML GMV diagnosis: MERCHANT=<id> [PERIOD_A=START:END PERIOD_B=START:END]; prints its path
	@test -n "$(MERCHANT)" || { echo "usage: make diagnose MERCHANT=m00034 [PERIOD_A=YYYY-MM-DD:YYYY-MM-DD PERIOD_B=...]" >&2; exit 2; }
	@$(RUN) python -m merchant_growth diagnose $(MERCHANT) $(if $(PERIOD_A),--period-a $(PERIOD_A)) $(if $(PERIOD_B),--period-b $(PERIOD_B))

# Issue 18: precision, recall and false causes of the diagnosis over seeds and scales (docs/benchmarks.md).
BENCH_SEEDS ?= 7,42,123
BENCH_SCALES ?= tiny,small
bench-diagnose: $(VENV_STAMP) ## planted-cause benchmark of the diagnosis: BENCH_SCALES=tiny,small BENCH_SEEDS=7,42,123 (homes under $SHOPRANK_HOME/bench-diagnose)
	$(RUN) python -m benchmarks.diagnose --root "$(SHOPRANK_HOME)/bench-diagnose" --scales $(BENCH_SCALES) --seeds $(BENCH_SEEDS) --sources panel,events

forecast: $(VENV_STAMP) ## next-7-day merchant GMV forecast: backtest vs seasonal naive, register, promote if better
	$(RUN) python -m merchant_growth train-forecast
	$(RUN) python -m merchant_growth promote-forecast

# --- campaign what-if planner (issue 18 section 3; docs/merchant_growth.md, "Campaign what-if planner") ------
CAMPAIGN ?=
SCENARIOS ?=
DISCOUNT ?=
LIVE ?=
PRICE_CHANGE ?=
BOOST ?=
TRAFFIC_SHARE ?=
PLANNER_SEEDS ?= 7,42,123
PLANNER_SCALES ?= tiny,small

.PHONY: plan-campaign bench-planner

plan-campaign: $(VENV_STAMP) ## what-if GMV plan, HTML: MERCHANT=<id> CAMPAIGN=11.11 [SCENARIOS=file.yml | DISCOUNT= LIVE=1 PRICE_CHANGE= BOOST= TRAFFIC_SHARE=]
	@test -n "$(MERCHANT)" -a -n "$(CAMPAIGN)" || { echo "usage: make plan-campaign MERCHANT=m00034 CAMPAIGN=12.12 [SCENARIOS=file.yml | DISCOUNT=0.3 LIVE=1 PRICE_CHANGE=-0.1 BOOST=0.3 TRAFFIC_SHARE=1.2]" >&2; exit 2; }
	@$(RUN) python -m merchant_growth plan-campaign $(MERCHANT) --campaign $(CAMPAIGN) $(if $(SCENARIOS),--scenarios $(SCENARIOS)) \
		$(if $(DISCOUNT),--discount $(DISCOUNT)) $(if $(filter 1 true yes,$(LIVE)),--live) $(if $(filter 0 false no,$(LIVE)),--no-live) \
		$(if $(PRICE_CHANGE),--price-change $(PRICE_CHANGE)) $(if $(BOOST),--boost $(BOOST)) $(if $(TRAFFIC_SHARE),--traffic-share $(TRAFFIC_SHARE))

bench-planner: $(VENV_STAMP) ## the planner's uplifts vs the simulator's oracle and the naive planner: PLANNER_SCALES=tiny,small PLANNER_SEEDS=7,42,123 (homes under $SHOPRANK_HOME/bench-planner)
	$(RUN) python -m benchmarks.planner --root "$(SHOPRANK_HOME)/bench-planner" --scales $(PLANNER_SCALES) --seeds $(PLANNER_SEEDS)

# --- serving under load (docs/benchmarks.md, "Serving") ---------------------------------------------------
# Both start `bentoml serve` on SHOPRANK_HOME's champion; build a SCALE=small home first, e.g.
#   make data features apply materialize train promote SCALE=small SHOPRANK_HOME=/tmp/bench
#   make bench-serve SHOPRANK_HOME=/tmp/bench
RATE ?= 150
SOAK_SECONDS ?= 120

.PHONY: bench-serve stress install-haproxy serve-haproxy

# HAProxy sheds load in front of the service (serving/haproxy.py): Debian's package, or the OS's own.
install-haproxy: ## HAProxy from the OS packages (apt-get; sudo when not root), for bench-serve and serve-haproxy
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { \
		command -v apt-get >/dev/null 2>&1 || { echo "no apt-get here: install HAProxy with your OS's package manager (brew install haproxy, dnf install haproxy)" >&2; exit 2; }; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy || { $$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy; }; }

bench-serve: $(VENV_STAMP) install-haproxy ## /rank at 100 and 300 req/s, at max rate and at 2x overload (alone, then behind HAProxy) vs Feast's read and an in-process floor; writes docs/benchmarks.md [SERVER_CPUS=0 CLIENT_CPUS=1: service and load generator on separate cores]
	$(RUN) python -m benchmarks.serving $(if $(SERVER_CPUS),--server-cpus $(SERVER_CPUS)) $(if $(CLIENT_CPUS),--client-cpus $(CLIENT_CPUS)) $(if $(BENCH_ARGS),$(BENCH_ARGS))

serve-haproxy: $(VENV_STAMP) install-haproxy ## serve the champion behind HAProxy on PORT: it sheds over capacity with 503 + Retry-After (MAX_CONN, QUEUE_MS), foreground
	$(RUN) python -m serving.haproxy serve --port $(PORT) $(if $(MAX_CONN),--max-conn $(MAX_CONN)) $(if $(QUEUE_MS),--queue-ms $(QUEUE_MS))

stress: $(VENV_STAMP) ## soak /rank at RATE req/s for SOAK_SECONDS: fails on any error or >10% memory growth
	$(RUN) python -m benchmarks.soak --seconds $(SOAK_SECONDS) --rate $(RATE)

# --- the tools on the same state (README, "Using the real tools on the same state") --------------------------
FEAST_UI_PORT ?= 8888

.PHONY: feast-ui bento

feast-ui: $(VENV_STAMP) ## Feast's web UI on this state's registry at http://127.0.0.1:FEAST_UI_PORT (default 8888), foreground
	$(FEAST) ui --host 127.0.0.1 --port $(FEAST_UI_PORT)

bento: $(VENV_STAMP) ## bentoml build: the ranking service (bentofile.yaml) with the dependencies locked in uv.lock
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --quiet -o requirements-bento.txt
	$(RUN) bentoml build

# --- online experiments of the ranker (docs/experiments.md) ------------------------------------------------
ID ?=
DESIGN ?= ab
ARMS ?=
SALT ?=
START ?=
STOP ?=

# Issue 16, section 4: the analysis against the oracle, in process on this state (make demo's will do).
BENCH_SEEDS ?= 0 1
.PHONY: bench-experiments
bench-experiments: $(VENV_STAMP) ## A/A false positives, sign and coverage of lifts, A/B vs interleaving power, BENCH_SEEDS="0 1" (docs/benchmarks.md)
	@test -f "$(SHOPRANK_HOME)/oracle/world/meta.json" || { echo "no stored world under $(SHOPRANK_HOME): run make demo (or data ... promote) first" >&2; exit 2; }
	@for s in $(BENCH_SEEDS); do $(RUN) python -m benchmarks.experiments --seed $$s --out "$(SHOPRANK_HOME)/benchmarks/experiments-seed$$s.json" || exit 1; done

.PHONY: experiment-start experiment-stop experiments experiment-show

experiment-start: $(VENV_STAMP) ## start an experiment: ID=<id> ARMS="control=champion:0.5,treatment=v3:0.5" [DESIGN=ab|interleaving SALT= START= STOP=]
	@test -n "$(ID)" -a -n "$(ARMS)" || { echo 'usage: make experiment-start ID=<id> ARMS="control=champion:0.5,treatment=v3:0.5" [DESIGN=ab|interleaving SALT=... START=<UTC ISO> STOP=<UTC ISO>]' >&2; exit 2; }
	@$(RUN) python -m serving.experiments start --id "$(ID)" --arms "$(ARMS)" --design "$(DESIGN)" $(if $(SALT),--salt "$(SALT)") $(if $(START),--start "$(START)") $(if $(STOP),--stop "$(STOP)")

experiment-stop: $(VENV_STAMP) ## stop a running experiment now: ID=<id>
	@test -n "$(ID)" || { echo "usage: make experiment-stop ID=<id>" >&2; exit 2; }
	@$(RUN) python -m serving.experiments stop "$(ID)"

experiments: $(VENV_STAMP) ## every experiment with its arms, window and state
	@$(RUN) python -m serving.experiments list

experiment-show: $(VENV_STAMP) ## one experiment's stored definition as JSON: ID=<id>
	@test -n "$(ID)" || { echo "usage: make experiment-show ID=<id>" >&2; exit 2; }
	@$(RUN) python -m serving.experiments show "$(ID)"

# Live shoppers (issue 16): sessions from the world `make data` drew, sent to the service running on PORT.
RATE ?= 50
SECONDS ?= 60
LINGER ?= 0

.PHONY: live

live: $(VENV_STAMP) ## live shoppers against the running service: RATE=<req/s> SECONDS=<n> [PORT= LINGER=<s> LIVE_SEED=]
	$(RUN) python -m simulator live --rate $(RATE) --seconds $(SECONDS) --linger $(LINGER) --url http://127.0.0.1:$(PORT) $(if $(LIVE_SEED),--seed $(LIVE_SEED)) $(if $(CHECKOUT_SPEEDUP),--checkout-speedup $(CHECKOUT_SPEEDUP))

# Analysis of an experiment (issue 16, section 3; docs/experiments.md "Analysis").
WINDOW_MINUTES ?= 1440
ALPHA ?= 0.05
POWER ?= 0.8
DAYS ?=

.PHONY: experiment-report experiment-plan demo-experiment

experiment-report: $(VENV_STAMP) ## analyse an experiment: ID=<id> [WINDOW_MINUTES=1440]; HTML report, summary.json, MLflow run
	@test -n "$(ID)" || { echo "usage: make experiment-report ID=<id> [WINDOW_MINUTES=1440]" >&2; exit 2; }
	@$(RUN) python -m serving.experiments report "$(ID)" --window-minutes $(WINDOW_MINUTES)

experiment-plan: $(VENV_STAMP) ## minimum detectable GMV-per-request lift: RATE=<req/s> SECONDS=<n> | DAYS=<n> [ALPHA=0.05 POWER=0.8]
	@$(RUN) python -m serving.experiments plan --rate $(RATE) $(if $(DAYS),--days $(DAYS),--seconds $(SECONDS)) --alpha $(ALPHA) --power $(POWER)

demo-experiment: $(VENV_STAMP) ## champion vs a random ranker on live shoppers (~13 min): report, summary.json, headline GMV lift vs the oracle's [RATE= SECONDS= LIVE_SEED= SALT= CHECKOUT_SPEEDUP= CONTROL=v1 STREAM=1]
	$(RUN) python -m serving.experiments.demo --rate $(if $(filter command line,$(origin RATE)),$(RATE),200) --seconds $(if $(filter command line,$(origin SECONDS)),$(SECONDS),600) $(if $(filter command line,$(origin LINGER)),--linger $(LINGER)) $(if $(LIVE_SEED),--seed $(LIVE_SEED)) $(if $(SALT),--salt "$(SALT)") $(if $(filter command line,$(origin WINDOW_MINUTES)),--window-minutes $(WINDOW_MINUTES)) $(if $(CHECKOUT_SPEEDUP),--checkout-speedup $(CHECKOUT_SPEEDUP)) --design $(DESIGN) $(if $(CONTROL),--control $(CONTROL)) $(if $(STREAM),--stream)

# --- monitoring (issue 19; README "Monitoring") -------------------------------------------------------------
DAY ?=
THRESHOLDS ?=
MONITOR_RUN ?=

.PHONY: monitor bench-monitor

monitor: $(VENV_STAMP) ## data quality, drift, freshness, online quality over a day [DAY=YYYY-MM-DD THRESHOLDS=file]; non-zero on an alert
	$(RUN) python -m serving.monitoring $(if $(DAY),--day $(DAY)) $(if $(THRESHOLDS),--thresholds $(THRESHOLDS)) $(if $(MONITOR_RUN),--run-name $(MONITOR_RUN))

bench-monitor: $(VENV_STAMP) ## planted incidents at SCALE=tiny over several seeds (the mis-calibrated challenger on live shoppers included): detected, delay, false alarms (docs/benchmarks.md)
	$(RUN) python -m benchmarks.monitoring

# Streamed features (issue 17, sections 2 and 3; docs/streaming.md).
STREAM_SECONDS ?=

.PHONY: stream stream-backfill

stream: $(VENV_STAMP) ## stream processor: live events -> windowed user/product features -> Feast push + offline log, until Ctrl-C [STREAM_SECONDS=n]
	$(RUN) python -m transforms.streaming run $(if $(STREAM_SECONDS),--seconds $(STREAM_SECONDS))

stream-backfill: $(VENV_STAMP) ## the stream features over the raw history into the offline log (same definitions as the processor)
	$(RUN) python -m transforms.streaming backfill

# Issue 17, section 5 (docs/benchmarks.md, "Stream freshness and throughput"): on a prepared state whose champion
# was trained on ctr_model_v2_stream; the current profile's transport (SHOPRANK_PROFILE=prod: the Redis Stream).
BENCH_STREAM_RUNS ?= 3
STREAM_BATCH_SIZES ?= 5000
STREAM_PUBLISH_SECONDS ?= 0.2,5

.PHONY: bench-stream

bench-stream: $(VENV_STAMP) ## event -> /rank freshness (p50/p99, decomposed) under live shoppers, processor max events/s vs the live rate [BENCH_STREAM_RUNS=3 RATE=150 (the Makefile default) STREAM_BATCH_SIZES=5000 STREAM_PUBLISH_SECONDS=0.2,5: each run with each processor batch size and each live publishing interval]
	$(RUN) python -m benchmarks.stream run --runs $(BENCH_STREAM_RUNS) --live-rate $(RATE) --batch-sizes $(STREAM_BATCH_SIZES) --publish-seconds $(STREAM_PUBLISH_SECONDS)

# Issue 18, section 4: ctr_model_v1 vs ctr_model_v3_calendar per day kind over seeds x periods (docs/calendar_models.md).
CAL_SEEDS ?= 42 7 11
CAL_END_DATES ?= 2026-11-14 2026-12-15 2026-10-20
CAL_ROOT ?= /tmp/shoprank-bench-calendar

.PHONY: bench-calendar

bench-calendar: $(VENV_STAMP) ## v1 vs the calendar model per day kind over CAL_SEEDS x CAL_END_DATES at SCALE [HISTORY_DAYS=n] (one state folder per cell under CAL_ROOT; docs/benchmarks.md)
	@for seed in $(CAL_SEEDS); do for end in $(CAL_END_DATES); do \
		$(RUN) python -m benchmarks.calendar_models cell --seed $$seed --end-date $$end --scale $(SCALE) --root $(CAL_ROOT) $(if $(HISTORY_DAYS),--history-days $(HISTORY_DAYS)) || exit 1; \
	done; done
	$(RUN) python -m benchmarks.calendar_models render --root $(CAL_ROOT)
