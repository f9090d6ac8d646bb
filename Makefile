# kvstore: build, run and test. `make help` lists the targets.

CARGO ?= cargo

.PHONY: help build run test test-tansu test-long lint unit-and-integration check-deploy openapi broker bench bench-compare clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/kvstore)
	$(CARGO) build --release --locked

run: build ## Start a local Tansu broker and kvstore on http://127.0.0.1:8080
	scripts/run.sh

test: lint unit-and-integration test-tansu ## Format check, clippy, every test on Apache Kafka, the API tests on Tansu

lint: ## cargo fmt --check and clippy with warnings as errors (says what it skips if a tool is missing)
	@if $(CARGO) fmt --version >/dev/null 2>&1; then \
	  echo "$(CARGO) fmt --all -- --check"; $(CARGO) fmt --all -- --check; \
	else echo "lint: rustfmt is not installed; skipped the format check"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then \
	  echo "$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings"; \
	  $(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings && \
	  $(CARGO) clippy --locked -- -D warnings; \
	else echo "lint: clippy is not installed; skipped clippy"; fi

unit-and-integration: ## Unit and integration tests against Apache Kafka (built with fault injection points)
	CARGO=$(CARGO) scripts/test.sh kafka

test-tansu: ## The HTTP API and interop tests against Tansu, the second broker
	CARGO=$(CARGO) scripts/test.sh tansu

test-long: ## The slow tests (a million keys) against Apache Kafka
	CARGO=$(CARGO) scripts/test.sh long

check-deploy: ## Validate Dockerfile, compose, Prometheus, Grafana, Helm and OpenAPI files; scrape a live kvstore with Prometheus
	scripts/check-deploy.sh

.PHONY: check-sdks
check-sdks: ## Generate TypeScript, Go, Java and Python clients from openapi/openapi.json; run their smoke programs against a live kvstore
	scripts/check-sdks.sh

openapi: ## Regenerate openapi/openapi.json from the code
	$(CARGO) run --quiet --locked -- openapi > openapi/openapi.json

broker: ## Install Apache Kafka's jars and print their folder
	@scripts/kafka.sh install

bench: build ## Measure kvstore on Apache Kafka beside its floors and etcd (~10 min; BENCH_BROKER=tansu for Tansu); writes bench/RESULTS.md
	scripts/bench.sh

bench-compare: ## Measure the build of BASE=<git rev> beside this tree's, alternately, on the hot paths (~5 min); writes target/bench-compare/BASE-vs-HEAD.md
	@if [ -z "$(BASE)" ]; then echo "usage: make bench-compare BASE=<git rev>" >&2; exit 2; fi
	CARGO=$(CARGO) scripts/bench-compare.sh "$(BASE)"

clean: ## Remove build output and local run data
	$(CARGO) clean
	rm -rf .run
