# The single source of commands: README, CI and developers all go through these targets.
.PHONY: run test lint fmt openapi ci redis interop-venv celery-venv omniq-venv clients chromium rigatoni-writer bench bench-wait bench-celery bench-layouts profile build fuzz-api soak

CARGO ?= cargo

## Serve on 127.0.0.1:8080 with the embedded store (RESULTD_* variables override settings).
run:
	$(CARGO) run --release --locked -- serve

build:
	$(CARGO) build --release --locked

## Every test: installs redis-server, redis-sentinel, openssl and chromium when missing, builds the mognet, Celery and
## OmniQ venvs, generates the Python and TypeScript clients, runs the one integration binary, then fuzzes the served contract with schemathesis.
test: redis chromium interop-venv celery-venv omniq-venv clients rigatoni-writer
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20} scripts/fuzz-api.sh

## redis-server, redis-cli, redis-sentinel and openssl from Debian's packages, when missing.
redis:
	@scripts/ensure-redis.sh

## .venv-interop/ with real mognet 2.0.0 (interop/requirements.txt) for the interop tests;
## reused while the requirements and the Python version are unchanged.
interop-venv:
	@scripts/venv.sh .venv-interop interop/requirements.txt

## .venv-celery/ with real Celery 5.7.0 (interop/celery/requirements.txt) for the Celery interop tests;
## reused while the requirements and the Python version are unchanged.
celery-venv:
	@scripts/venv.sh .venv-celery interop/celery/requirements.txt

## .venv-omniq/ with msgspec and redis-py (interop/omniq/requirements.txt) for the OmniQ fixture writer.
omniq-venv:
	@scripts/venv.sh .venv-omniq interop/omniq/requirements.txt

## The Python and TypeScript clients generated from openapi/openapi.json into target/clients/ by the
## pinned generators (tests/clients/), for the generated-client tests; installs nodejs and npm when missing.
clients:
	@scripts/clients.sh

## target/rigatoni-writer/debug/rigatoni-writer: writes Rigatoni resume tokens and locks through
## rigatoni-stores 0.2.0's own RedisStore for the Rigatoni tests (its own Cargo project, so
## resultd's dependencies stay free of Rigatoni's).
rigatoni-writer:
	$(CARGO) build --locked --manifest-path tests/rigatoni-writer/Cargo.toml --target-dir target/rigatoni-writer

## Debian's chromium, for the browser test of the docs page, when missing.
chromium:
	@scripts/ensure-chromium.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate the committed OpenAPI document.
openapi:
	$(CARGO) run --locked -q -- openapi > openapi/openapi.json

ci: lint test

## Fuzz the served contract with schemathesis (bounded; FUZZ_EXAMPLES per operation).
fuzz-api: redis
	scripts/fuzz-api.sh

## Minutes of mixed load with Redis cut twice; reports lost writes (must be 0). Not run by CI.
soak: redis
	$(CARGO) build --release --locked
	python3 bench/soak.py --seconds $${SOAK_SECONDS:-120} --cut $${SOAK_CUT:-8} --clients $${SOAK_CLIENTS:-16}

## Throughput against the bench kit's baselines (../shared/bench), interleaved A B A C; see
## docs/performance.md. BENCH_ROUNDS (3), BENCH_DURATION (10 s per run), BENCH_SCENARIOS ("hash value put put_spread").
bench: redis
	bench/run.sh

## Where resultd's CPU goes in one scenario: perf over a wrk load (PROFILE_SCENARIO=hot; bench/profile.sh).
profile: redis
	bench/profile.sh

## Long-poll figures: wake latency, Redis commands per idle waiter, RSS per held wait (docs/performance.md).
bench-wait: redis
	bench/wait.sh

## Wake latency of an HTTP long poll per layout (mognet, Celery, OmniQ, Rigatoni; p50/p99 over
## BENCH_WAITS, 200, each) after a foreign write made as each layout's own writer makes it.
bench-layouts: redis
	bench/layouts.sh

## Wake latency of an HTTP long poll on a real Celery worker against AsyncResult.get() in the same run
## (p50/p99 over BENCH_CELERY_TASKS, 200), and the Celery channels left subscribed after it.
bench-celery: redis celery-venv
	bench/celery.sh
