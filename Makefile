# kvstore: build, run and test. `make help` lists the targets.

CARGO ?= cargo
TANSU = $(shell scripts/tansu.sh memory)

.PHONY: help build run test test-long lint unit-and-integration check-deploy openapi broker bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/kvstore)
	$(CARGO) build --release --locked

run: build ## Start a local Tansu broker and kvstore on http://127.0.0.1:8080
	scripts/run.sh

test: lint unit-and-integration ## Format check, clippy, then every test against a real broker

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings
	$(CARGO) clippy --locked -- -D warnings

unit-and-integration: ## Unit and HTTP tests against Tansu (built with fault injection points)
	@export KVSTORE_TEST_SCHEMATHESIS="$$(scripts/schemathesis.sh)" \
	  KVSTORE_TEST_OPENAPI_PYTHON_CLIENT="$$(scripts/openapi-python-client.sh)"; \
	tansu="$(TANSU)"; test -x "$$tansu" || { echo "no Tansu broker binary" >&2; exit 1; }; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  KVSTORE_TEST_TANSU="$$tansu" $(CARGO) nextest run --locked --no-fail-fast --features failpoints; \
	else \
	  KVSTORE_TEST_TANSU="$$tansu" $(CARGO) test --locked --no-fail-fast --features failpoints; \
	fi

test-long: ## The slow fault tests (broker killed and restarted, SQLite storage; builds that broker once)
	@export KVSTORE_TEST_TANSU="$(TANSU)" KVSTORE_TEST_TANSU_SQLITE="$$(scripts/tansu.sh sqlite)"; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --no-fail-fast --features failpoints --run-ignored only; \
	else \
	  $(CARGO) test --locked --no-fail-fast --features failpoints -- --ignored; \
	fi

check-deploy: ## Validate Dockerfile, compose, Prometheus, Grafana, Helm and OpenAPI files; scrape a live kvstore with Prometheus
	scripts/check-deploy.sh

.PHONY: check-sdks
check-sdks: ## Generate TypeScript, Go, Java and Python clients from openapi/openapi.json; run their smoke programs against a live kvstore
	scripts/check-sdks.sh

openapi: ## Regenerate openapi/openapi.json from the code
	$(CARGO) run --quiet --locked -- openapi > openapi/openapi.json

broker: ## Install the Tansu broker and print its path
	@scripts/tansu.sh memory

bench: build ## Measure kvstore beside its floors and etcd (~6 min); writes bench/RESULTS.md
	scripts/bench.sh

clean: ## Remove build output and local run data
	$(CARGO) clean
	rm -rf .run
