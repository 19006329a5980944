# Remora: the two commands a new user needs are `make run` and `make test`.
# Every target installs missing Debian packages first (scripts/install-deps.sh is idempotent).

JOBS ?= $(shell nproc)
CTEST_JOBS ?= 2

.PHONY: all deps build build-debug build-asan run mesh-demo test test-asan bench bench-uncapped bench-scaling bench-chain bench-control bench-tls bench-micro bench-alloc bench-memory clean format fuzz

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

# A whole mesh on this machine: remora-control, four app + sidecar pairs registering themselves,
# and a traffic loop; prints the admin URLs and things to try. Ctrl-C stops it (deploy/local).
mesh-demo: build
	@bash scripts/mesh-demo.sh

# Every unit and integration test against the Release build.
test: build
	@ctest --preset release -j $(CTEST_JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: build-asan
	@ctest --preset asan -j $(CTEST_JOBS)

# libFuzzer targets (tests/fuzz; clang, ASan+UBSan, build-fuzz/): each runs FUZZ_SECONDS
# (default 60) from its seed corpus; a crash, leak, undefined behaviour or failed check fails.
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# Remora vs HAProxy vs nginx (plain HTTP), then TLS termination vs HAProxy with the same
# certificate (TLS req/s, handshakes/s) and allocations per request: the issues' headline numbers.
# Every proxy worker runs under the same CPU quota (BENCH_PROXY_CPU cores, a cgroup each; needs
# root), so that the proxy, not wrk or the upstream, is the bottleneck even on a 2-core machine.
# `make bench BENCH_PROXY_CPU=` (empty) or `make bench-uncapped` measures without the quota.
BENCH_PROXY_CPU ?= 0.5
BENCH_CAP = $(if $(BENCH_PROXY_CPU),--proxy-cpu $(BENCH_PROXY_CPU))
bench: build
	@python3 perf/bench.py $(BENCH_CAP)
	@python3 perf/bench_tls.py $(BENCH_CAP)
	@python3 perf/alloc_count.py

# The same table with no CPU quota: each proxy may use its whole core (perf/README.md says when
# this measures the machine rather than the proxy).
bench-uncapped: build
	@python3 perf/bench.py

# Worker scaling: 1 worker vs 2 workers, unpinned, each worker under the same quota (0.4 core, so
# that 2 workers, wrk and the upstream fit on 2 cores). The issue-7 target is >= 1.8x.
bench-scaling: build
	@python3 perf/bench.py --targets remora,remora-2w --no-pin --proxy-cpu 0.4 --rounds 5 --duration 3

# The resilience chain's cost: Remora bare vs with retry+breaker+bulkhead+weighted LB, and HAProxy
# bare vs with retries, redispatch, health checks and weights.
bench-chain: build
	@python3 perf/bench.py $(BENCH_CAP) --targets remora,remora-chain,haproxy,haproxy-chain

# The control plane: registry change -> last proxy ACK with 1/10/50 proxies and 100/1,000/10,000
# endpoints, and its CPU and memory with 10,000 instances heartbeating (perf/README.md).
bench-control: build
	@python3 perf/bench_control.py

# TLS termination: Remora vs HAProxy with the same certificate (TLS req/s and handshakes/s).
bench-tls: build
	@python3 perf/bench_tls.py $(BENCH_CAP)

# Google Benchmark: parse+route+rewrite, LB pick, breaker, stats; with allocations per operation.
bench-micro: build
	@./build/remora_micro --benchmark_min_time=0.2

# Allocations per request of the live proxy (malloc counter preloaded), steady state.
bench-alloc: build
	@python3 perf/alloc_count.py

# RSS per idle keep-alive connection (10,000 of them) for Remora, HAProxy and nginx, then a
# 10-minute soak of Remora at full load with RSS samples.
bench-memory: build
	@python3 perf/memory.py

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-debug build-asan
