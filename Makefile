# The single source of commands: README, CI and developers all go through these targets.
.PHONY: run test lint fmt openapi ci redis bench build

CARGO ?= cargo

## Serve on 127.0.0.1:8080 with the embedded store (RESULTD_* variables override settings).
run:
	$(CARGO) run --release --locked -- serve

build:
	$(CARGO) build --release --locked

## Every test: installs the Redis packages and openssl when missing, then runs the one integration binary.
test: redis
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi

## redis-server, redis-cli, redis-sentinel and openssl from Debian's packages, when missing.
redis:
	@scripts/ensure-redis.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate the committed OpenAPI document.
openapi:
	$(CARGO) run --locked -q -- openapi > openapi/openapi.json

ci: lint test
