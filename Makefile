# The single source of commands: README, CI and developers all go through these targets.
.PHONY: run test lint fmt openapi ci redis chromium bench build

CARGO ?= cargo

## Serve on 127.0.0.1:8080 with the embedded store (RESULTD_* variables override settings).
run:
	$(CARGO) run --release --locked -- serve

build:
	$(CARGO) build --release --locked

## Every test: installs redis-server and chromium when missing, then runs the one integration binary.
test: redis chromium
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi

## redis-server and redis-cli from Debian's packages, when missing.
redis:
	@scripts/ensure-redis.sh

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
