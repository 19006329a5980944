# Remora: the two commands a new user needs are `make run` and `make test`.
# Every target installs missing Debian packages first (scripts/install-deps.sh is idempotent).

JOBS ?= $(shell nproc)
CTEST_JOBS ?= 2

.PHONY: all deps build build-debug build-asan run test test-asan bench bench-chain bench-tls bench-micro clean format

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

build-debug: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

build-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

# Starts a demo upstream and Remora on config/examples/quickstart.yaml in the foreground.
run: build
	@bash scripts/run-quickstart.sh

# Every unit and integration test against the Release build.
test: build
	@ctest --preset release -j $(CTEST_JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: build-asan
	@ctest --preset asan -j $(CTEST_JOBS)

# Remora vs HAProxy vs nginx under wrk; prints medians and ratios.
bench: build
	@python3 perf/bench.py

# The resilience chain's cost: Remora bare vs with retry+breaker+bulkhead+weighted LB, and HAProxy
# bare vs with retries, redispatch, health checks and weights.
bench-chain: build
	@python3 perf/bench.py --targets remora,remora-chain,haproxy,haproxy-chain

# TLS termination: Remora vs HAProxy with the same certificate (TLS req/s and handshakes/s).
bench-tls: build
	@python3 perf/bench_tls.py

# Google Benchmark: parse+route+rewrite, LB pick, breaker, stats; with allocations per operation.
bench-micro: build
	@./build/remora_micro --benchmark_min_time=0.2

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-debug build-asan
