// Micro-benchmarks of the proxy's hot paths, with heap allocations per iteration:
//   - a small GET parsed by llhttp into a HeaderMap, routed, and rewritten for the upstream
//     (the same steps DownstreamConnection and ActiveStream::buildUpstreamHead take);
//   - an upstream response head parsed into a HeaderBlock and forwarded to the client;
//   - a load-balancer pick for each policy and host count;
//   - a circuit breaker admission plus outcome;
//   - stats increments, one thread and contended;
//   - a per-try timeout armed and cancelled, on the worker's TimeoutQueue and, for comparison, as
//     the uv timer per try it replaced (1,000 other requests' timeouts armed meanwhile).
// Run: `make bench-micro` (Release). Numbers are per operation; compare runs on one machine.

#include <benchmark/benchmark.h>
#include <llhttp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "alloc_counter.h"
#include "http/headers.h"
#include "lb/circuit_breaker.h"
#include "lb/load_balancer.h"
#include "remora/time_source.h"
#include "runtime.h"
#include "snapshot.h"
#include "stats.h"
#include "timeout_queue.h"
#include "uv_util.h"

namespace remora::micro {
namespace {

// Allocations per iteration, measured over the timed loop.
class AllocScope {
 public:
  explicit AllocScope(benchmark::State& state) : state_(state), start_(allocationCount()) {}
  ~AllocScope() {
    state_.counters["allocs/iter"] = benchmark::Counter(
        static_cast<double>(allocationCount() - start_) / static_cast<double>(state_.iterations()));
  }

 private:
  benchmark::State& state_;
  uint64_t start_;
};

constexpr std::string_view kRequest =
    "GET /api/orders/12345?expand=items HTTP/1.1\r\n"
    "Host: orders.internal\r\n"
    "User-Agent: bench/1.0\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
    "X-Request-Id: 5f1c2a9e-1b2c-4d5e-8f90-123456789abc\r\n"
    "X-Canary: 1\r\n"
    "Cookie: session=abcdef0123456789\r\n"
    "\r\n";

constexpr std::string_view kConfig = R"(
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: /healthz }
        cluster: orders
      - match: { prefix: /api/users/ }
        cluster: orders
      - match: { prefix: /api/, headers: { x-canary: "1" } }
        cluster: orders
      - match: { prefix: / }
        cluster: orders
clusters:
  - name: orders
    endpoints: [{ address: 127.0.0.1:8081 }, { address: 127.0.0.1:8082 }]
)";

// What DownstreamConnection's llhttp callbacks build.
struct ParsedHead {
  std::string url;
  http::HeaderMap headers;
  std::string field, value;
  bool in_value = false;
  void commit() {
    http::toLowerInPlace(field);
    headers.add(std::move(field), std::move(value));
    field.clear();
    value.clear();
    in_value = false;
  }
};

struct Fixture {
  Fixture() : runtime(stats, RealTimeSource::instance()) {
    config::LoadResult r = config::loadString(kConfig);
    std::string error;
    snapshot = Snapshot::build(r.config, 1, "file", stats, runtime, error);
    llhttp_settings_init(&settings);
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      static_cast<ParsedHead*>(p->data)->url.append(at, n);
      return 0;
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      auto* h = static_cast<ParsedHead*>(p->data);
      if (h->in_value) h->commit();
      h->field.append(at, n);
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto* h = static_cast<ParsedHead*>(p->data);
      h->in_value = true;
      h->value.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      auto* h = static_cast<ParsedHead*>(p->data);
      if (h->in_value) h->commit();
      return 0;
    };
  }
  StatsStore stats;
  RuntimeRegistry runtime;
  SnapshotConstSharedPtr snapshot;
  llhttp_settings_t settings;
};

void BM_ParseRouteRewrite(benchmark::State& state) {
  Fixture f;
  const ListenerInfo& listener = f.snapshot->listeners()[0];
  std::string out;
  ParsedHead head;
  llhttp_t parser;
  {
    AllocScope allocs(state);
    for (auto _ : state) {
      head.url.clear();
      head.headers.clear();
      llhttp_init(&parser, HTTP_REQUEST, &f.settings);
      parser.data = &head;
      llhttp_execute(&parser, kRequest.data(), kRequest.size());
      std::string_view path = std::string_view(head.url).substr(0, head.url.find('?'));
      const RouteInfo* route = matchRoute(listener, "GET", path, head.headers);
      benchmark::DoNotOptimize(route);
      out.clear();
      out.append("GET ").append(head.url).append(" HTTP/1.1\r\n");
      http::appendForwarded(head.headers, out, [](std::string_view name, const std::string&) {
        return name == "x-forwarded-for";
      });
      out.append("x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n");
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_ParseRouteRewrite);

// An upstream response head (what nginx sends for a static file) parsed into the connection's
// HeaderBlock and forwarded into the client's response head, as UpstreamConnection and
// ActiveStream::onResponseHeaders do.
constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Wed, 02 Dec 2026 12:07:18 GMT\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Length: 6\r\n"
    "Last-Modified: Wed, 02 Dec 2026 12:07:18 GMT\r\n"
    "Connection: keep-alive\r\n"
    "ETag: \"6751a3e6-6\"\r\n"
    "Accept-Ranges: bytes\r\n"
    "\r\n";

void BM_ResponseHeadForward(benchmark::State& state) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
    static_cast<http::HeaderBlock*>(p->data)->appendName(at, n);
    return 0;
  };
  settings.on_header_field_complete = [](llhttp_t* p) {
    return static_cast<http::HeaderBlock*>(p->data)->nameComplete() ? 0 : -1;
  };
  settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
    static_cast<http::HeaderBlock*>(p->data)->appendValue(at, n);
    return 0;
  };
  settings.on_header_value_complete = [](llhttp_t* p) {
    static_cast<http::HeaderBlock*>(p->data)->valueComplete();
    return 0;
  };
  http::HeaderBlock block;
  std::string out;
  llhttp_t parser;
  {
    AllocScope allocs(state);
    for (auto _ : state) {
      block.clearKeepingUpTo(16 * 1024);
      llhttp_init(&parser, HTTP_RESPONSE, &settings);
      parser.data = &block;
      llhttp_execute(&parser, kResponse.data(), kResponse.size());
      out.clear();
      out.append("HTTP/1.1 200 OK\r\n");
      block.appendForwarded(out, "x-remora-attempts");
      out.append("content-length: 6\r\nx-remora-attempts: 1\r\n\r\n");
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kResponse.size()));
}
BENCHMARK(BM_ResponseHeadForward);

void BM_LbPick(benchmark::State& state) {
  auto policy = static_cast<config::LbPolicy>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  std::vector<lb::LbHost> hosts(n);
  for (size_t i = 0; i < n; ++i) hosts[i].weight = static_cast<uint32_t>(1 + i % 3);
  lb::LoadBalancerPtr balancer = lb::createLoadBalancer(policy, n, 0);
  uint64_t random = 0x9e3779b97f4a7c15ULL;
  balancer->pick(hosts, -1, random);  // first pick sizes the state
  AllocScope allocs(state);
  for (auto _ : state) {
    random = random * 6364136223846793005ULL + 1442695040888963407ULL;
    benchmark::DoNotOptimize(balancer->pick(hosts, -1, random));
  }
  state.SetLabel(std::string(config::toString(policy)));
}
BENCHMARK(BM_LbPick)->ArgsProduct({{0, 1, 2, 3}, {3, 16, 100}});

void BM_BreakerAdmitAndRecord(benchmark::State& state) {
  config::CircuitBreaker cfg;
  cfg.failure_rate = config::FailureRate{};
  lb::CircuitBreaker breaker("127.0.0.1:8081", cfg, RealTimeSource::instance());
  AllocScope allocs(state);
  for (auto _ : state) {
    lb::CircuitBreaker::Permit p = breaker.tryAcquire();
    breaker.onResult(p, true);
  }
}
BENCHMARK(BM_BreakerAdmitAndRecord);

void BM_StatsIncrement(benchmark::State& state) {
  static StatsStore stats;
  ClusterStats& c = stats.cluster("orders");
  AllocScope allocs(state);
  for (auto _ : state) {
    c.upstream_requests.inc(200);
    c.upstream_requests_active.add(1);
    c.upstream_requests_active.sub(1);
  }
}
// Threads(2): both workers hitting the same cluster's counters (shared cache lines).
BENCHMARK(BM_StatsIncrement)->Threads(1)->Threads(2);

// 1,000 requests in flight, each with its per-try timeout armed; the benchmarked request arms
// and cancels its own, as a try that gets its answer in time does.
void BM_PerTryTimeoutQueue(benchmark::State& state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    TimeoutQueue queue(&loop);
    auto noop = [](void*) {};
    std::vector<std::unique_ptr<TimeoutQueue::Entry>> others;
    for (int i = 0; i < 1000; ++i) {
      others.push_back(std::make_unique<TimeoutQueue::Entry>(noop, nullptr));
      others.back()->arm(queue, std::chrono::milliseconds(1000));
    }
    TimeoutQueue::Entry mine(noop, nullptr);
    AllocScope allocs(state);
    for (auto _ : state) {
      mine.arm(queue, std::chrono::milliseconds(1000));
      mine.cancel();
    }
    others.clear();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}
BENCHMARK(BM_PerTryTimeoutQueue);

// What a try cost before the TimeoutQueue: a Timer (heap object and uv handle) made, started,
// stopped and closed per try, among 1,000 armed uv timers.
void BM_PerTryUvTimer(benchmark::State& state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    std::vector<std::unique_ptr<Timer>> others;
    for (int i = 0; i < 1000; ++i) {
      others.push_back(std::make_unique<Timer>(&loop, [] {}));
      others.back()->enable(std::chrono::milliseconds(1000));
    }
    AllocScope allocs(state);
    size_t n = 0;
    for (auto _ : state) {
      {
        Timer t(&loop, [] {});
        t.enable(std::chrono::milliseconds(1000));
        t.disable();
      }
      if (++n % 1024 == 0) {
        // Let the loop free the closed handles (untimed), as the worker's loop does each turn.
        state.PauseTiming();
        uv_run(&loop, UV_RUN_NOWAIT);
        state.ResumeTiming();
      }
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the closed handles' callbacks free them
  uv_loop_close(&loop);
}
BENCHMARK(BM_PerTryUvTimer);

}  // namespace
}  // namespace remora::micro

BENCHMARK_MAIN();
