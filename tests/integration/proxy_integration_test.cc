// Remora end to end: the real `remora` binary between HttpClient and fake-upstream, over
// loopback. Written against the contract (/work/shared/spec/CONTRACT.md sections 1-4).
//
// Every config uses short timeouts so the whole suite stays well under two minutes.

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "body_pattern.h"
#include "harness.h"

#ifndef REMORA_TARGET_DEFINED
#define REMORA_TARGET_DEFINED 0
#endif

namespace remora::itest {
namespace {

constexpr size_t kTenMiB = 10u << 20;

// One listener, one catch-all route to cluster "main" with one endpoint ${UP}.
constexpr std::string_view kBasicConfig = R"(
admin:
  address: ${ADMIN}
workers: 2
drain_timeout: 5s
listeners:
  - name: ingress
    address: ${LISTEN}
    request_headers_timeout: ${HEADERS_TIMEOUT}
    max_request_headers_kb: ${MAX_HEADERS_KB}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: ${ROUTE_TIMEOUT}
clusters:
  - name: main
    connect_timeout: 500ms
    endpoints:
      - { address: ${UP} }
)";

// One worker, one endpoint, at most one upstream connection: requests queue in the pool.
constexpr std::string_view kOneConnectionConfig = R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 3s
clusters:
  - name: main
    limits: { max_connections: 1 }
    endpoints: [ { address: ${UP} } ]
)";

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED) {
      GTEST_SKIP() << "the build has no `remora` target yet";
    }
    ASSERT_TRUE(remoraBinaryExists()) << "not built: " << remoraBinary();
  }

  // Starts fake upstream "main" and remora with kBasicConfig; `overrides` replace the defaults.
  void startBasic(const Vars& overrides = {}) {
    ASSERT_TRUE(up_.start());
    Vars vars{{"UP", up_.address()},
              {"HEADERS_TIMEOUT", "5s"},
              {"MAX_HEADERS_KB", "16"},
              {"ROUTE_TIMEOUT", "15s"}};
    for (const auto& [k, v] : overrides) vars[k] = v;
    ASSERT_TRUE(remora_.start(kBasicConfig, vars));
  }

  // `n` clients, each on a connection of its own, GET /x at the same time; their responses.
  std::vector<Response> getAtOnce(int n, Duration timeout) {
    std::vector<Response> responses(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back(
          [&, i] { responses[static_cast<size_t>(i)] = remora_.client(timeout).get("/x"); });
    }
    for (auto& t : threads) t.join();
    return responses;
  }

  UpstreamStats statsOf(const FakeUpstream& up) {
    auto s = up.stats();
    EXPECT_TRUE(s.has_value()) << "GET /__stats of " << up.name() << " failed";
    return s.value_or(UpstreamStats{});
  }

  TempDir tmp_;
  FakeUpstream up_{tmp_, "main"};
  RemoraProcess remora_{tmp_};
};

// --- Bodies both ways, with checksums. ---

class ProxyBodyTest : public ProxyTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(ProxyBodyTest, GetResponseBody) {
  startBasic();
  const size_t n = GetParam();
  HttpClient client = remora_.client(Duration(30000));
  Response r = client.get("/download", {{"x-fake-body-size", std::to_string(n)}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(sha256Hex(r.body), r.header("x-response-sha256"));
  EXPECT_EQ(sha256Hex(r.body), sha256Hex(fake::bodyPattern(n)));
  EXPECT_EQ(r.header("x-remora-attempts"), "1");
}

TEST_P(ProxyBodyTest, PostRequestBody) {
  startBasic();
  const std::string body = fake::bodyPattern(GetParam());
  HttpClient client = remora_.client(Duration(30000));
  Response r = client.post("/upload", body, {{"content-type", "application/octet-stream"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-length"), std::to_string(body.size()));
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(body));
  auto echo = parseJson(r.body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["body_length"], body.size());
}

TEST_P(ProxyBodyTest, ChunkedRequestBody) {
  startBasic();
  const std::string body = fake::bodyPattern(GetParam());
  HttpClient client = remora_.client(Duration(30000));
  RequestOptions options;
  options.chunked = true;
  options.chunk_size = 7919;
  Response r = client.request("POST", "/upload", {}, body, options);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-length"), std::to_string(body.size()));
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(body));
}

TEST_P(ProxyBodyTest, ChunkedUpstreamResponse) {
  startBasic();
  const size_t n = GetParam();
  HttpClient client = remora_.client(Duration(30000));
  Response r =
      client.get("/download", {{"x-fake-body-size", std::to_string(n)}, {"x-fake-chunked", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(sha256Hex(r.body), r.header("x-response-sha256"));
}

TEST_P(ProxyBodyTest, CloseDelimitedUpstreamResponse) {
  startBasic();
  const size_t n = GetParam();
  HttpClient client = remora_.client(Duration(30000));
  Response r =
      client.get("/download", {{"x-fake-body-size", std::to_string(n)}, {"x-fake-no-length", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(sha256Hex(r.body), r.header("x-response-sha256"));
}

// 2048 and 2049: the largest response body that is copied behind the response head and the
// smallest that is not (kCoalesceBodyBytes); 15000 and 40000: request bodies whose first read
// fits the upstream write gathering (kUpstreamCorkBytes, 16 KiB) and one that does not.
INSTANTIATE_TEST_SUITE_P(Sizes, ProxyBodyTest,
                         ::testing::Values(size_t{0}, size_t{1024}, size_t{2048}, size_t{2049},
                                           size_t{15000}, size_t{40000}, kTenMiB),
                         [](const auto& info) { return std::to_string(info.param) + "B"; });

// --- Connections. ---

TEST_F(ProxyTest, KeepAliveReusesUpstreamConnections) {
  startBasic();
  ASSERT_TRUE(up_.resetStats());
  HttpClient client = remora_.client();
  for (int i = 0; i < 100; ++i) {
    Response r = client.get("/ka");
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200);
  }
  EXPECT_EQ(client.connectionsOpened(), 1) << "the proxy closed a keep-alive client connection";
  UpstreamStats s = statsOf(up_);
  EXPECT_EQ(s.requests, 100u);
  EXPECT_LE(s.connections, 3u) << "upstream connections are not reused";
}

TEST_F(ProxyTest, StaleKeepAliveConnectionIsRetriedTransparently) {
  startBasic();
  // The upstream closes every connection right after answering, while announcing keep-alive:
  // the proxy's next request on that pooled connection meets a closed socket.
  HttpClient client = remora_.client();
  for (int i = 0; i < 50; ++i) {
    Response r = client.get("/stale", {{"x-fake-close-silently", "1"}});
    ASSERT_TRUE(r.ok()) << "GET " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "GET " << i << ": " << r.body;
  }
  // Nothing was received by the upstream on the stale connection, so even a POST is safe to
  // send again on a fresh one.
  for (int i = 0; i < 20; ++i) {
    Response r = client.post("/stale", "payload", {{"x-fake-close-silently", "1"}});
    ASSERT_TRUE(r.ok()) << "POST " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "POST " << i << ": " << r.body;
    EXPECT_EQ(r.header("x-body-sha256"), sha256Hex("payload"));
  }
  // A chunked body, sent in several chunks, is replayed whole (as one chunk).
  std::string body;
  for (int i = 0; i < 300; ++i) body += "chunk " + std::to_string(i) + ";";
  RequestOptions chunked;
  chunked.chunked = true;
  chunked.chunk_size = 100;
  for (int i = 0; i < 10; ++i) {
    Response r = client.request("POST", "/stale", {{"x-fake-close-silently", "1"}}, body, chunked);
    ASSERT_TRUE(r.ok()) << "chunked POST " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "chunked POST " << i << ": " << r.body;
    EXPECT_EQ(r.header("x-body-length"), std::to_string(body.size()));
    EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(body));
  }
}

// Many clients at once against an upstream that closes every connection silently after its
// answer: a request whose pooled connection turns out stale is replayed on a new connection, and
// must not be handed a pooled connection another request just released (as stale as the first:
// it failed a second time and reached the client as a 502).
TEST_F(ProxyTest, StaleConnectionReplayGetsANewConnectionUnderConcurrency) {
  startBasic();
  constexpr int kClients = 8;
  constexpr int kRequests = 40;
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpClient client = remora_.client(Duration(10000));
      for (int i = 0; i < kRequests && failures[c].empty(); ++i) {
        Response r = client.post("/stale", "payload", {{"x-fake-close-silently", "1"}});
        if (!r.ok() || r.status != 200) {
          failures[c] = "client " + std::to_string(c) + " POST " + std::to_string(i) + ": " +
                        (r.ok() ? std::to_string(r.status) + " " + r.body : r.error);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  EXPECT_EQ(statsOf(up_).requests, static_cast<uint64_t>(kClients * kRequests))
      << "a request reached the application twice, or not at all";
}

// At max_connections a request waits in the pool; when a connection closes (here: the stale
// pooled one a replay left), the freed slot must go to it at once. It used to wait until some
// other connection finished, or for its route timeout (a 504 after 3 s here).
TEST_F(ProxyTest, AClosedConnectionAtMaxConnectionsFreesItsSlotForTheWaitingRequest) {
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(kOneConnectionConfig, {{"UP", up_.address()}}));
  HttpClient client = remora_.client(Duration(10000));
  for (int i = 0; i < 100; ++i) {
    const Clock::time_point start = Clock::now();
    Response r = client.post("/stale", "payload", {{"x-fake-close-silently", "1"}});
    ASSERT_TRUE(r.ok()) << "POST " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "POST " << i << ": " << r.body;
    ASSERT_LT(Clock::now() - start, Duration(2000)) << "POST " << i << " waited for a slot";
  }
  EXPECT_EQ(statsOf(up_).requests, 100u);
}

// --- Malformed requests and local errors. ---

TEST_F(ProxyTest, GarbageRequestLineGets400AndClose) {
  startBasic();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw("this is not http\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(client.waitServerClosed()) << "connection left open after a 400";
  EXPECT_EQ(statsOf(up_).requests, 0u);
}

TEST_F(ProxyTest, ContentLengthWithTransferEncodingGets400) {
  startBasic();
  HttpClient client = remora_.client();
  ASSERT_TRUE(
      client.sendRaw("POST /smuggle HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                     "transfer-encoding: chunked\r\n\r\n0\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(statsOf(up_).requests, 0u);
}

TEST_F(ProxyTest, TwoDifferentContentLengthsGet400) {
  startBasic();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw(
      "POST /smuggle HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"
      "hello!"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(statsOf(up_).requests, 0u);
}

TEST_F(ProxyTest, HeadersLargerThanLimitGet431) {
  startBasic({{"MAX_HEADERS_KB", "4"}});
  HttpClient client = remora_.client();
  Response small = client.get("/ok", {{"x-filler", std::string(2000, 'a')}});
  ASSERT_TRUE(small.ok()) << small.error;
  EXPECT_EQ(small.status, 200);
  Response big = client.get("/big", {{"x-filler", std::string(8 * 1024, 'a')}});
  ASSERT_TRUE(big.ok()) << big.error;
  EXPECT_EQ(big.status, 431);
  EXPECT_EQ(statsOf(up_).requests, 1u);
}

TEST_F(ProxyTest, DribbledHeadersGet408) {
  startBasic({{"HEADERS_TIMEOUT", "300ms"}});
  HttpClient client = remora_.client();
  // One byte every 50 ms: a timer that restarts on every read would never fire.
  const std::string head = "GET /slow HTTP/1.1\r\nhost: x\r\nx-slow: " + std::string(200, 'z');
  const auto start = Clock::now();
  EXPECT_TRUE(client.dribble(head, Duration(50))) << "no answer while headers were dribbled";
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 408);
  EXPECT_LT(Clock::now() - start, Duration(3000));
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(statsOf(up_).requests, 0u);
}

TEST_F(ProxyTest, NoRouteGets404) {
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: /api/ }
        cluster: main
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
)",
                            {{"UP", up_.address()}}));
  HttpClient client = remora_.client();
  Response r = client.get("/elsewhere");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(r.body.empty()) << "local errors carry a short reason";
  Response ok = client.get("/api/x");
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(statsOf(up_).requests, 1u);
}

TEST_F(ProxyTest, NothingListeningGets502) {
  ASSERT_TRUE(remora_.start(kBasicConfig, {{"UP", "127.0.0.1:" + std::to_string(freePort())},
                                           {"HEADERS_TIMEOUT", "5s"},
                                           {"MAX_HEADERS_KB", "16"},
                                           {"ROUTE_TIMEOUT", "5s"}}));
  HttpClient client = remora_.client();
  Response r = client.get("/x");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.header("x-remora-attempts"), "1");
  EXPECT_LT(r.elapsed, Duration(3000));
}

// Requests queued behind max_connections for an endpoint that refuses connections: each failed
// connect frees the slot for the next waiting request, so every one gets its 502 at once (one
// used to be stranded until its route timeout, a 504).
TEST_F(ProxyTest, RequestsQueuedAtMaxConnectionsAllFailFastWhenNothingListens) {
  ASSERT_TRUE(
      remora_.start(kOneConnectionConfig, {{"UP", "127.0.0.1:" + std::to_string(freePort())}}));
  constexpr int kClients = 6;
  const std::vector<Response> responses = getAtOnce(kClients, Duration(10000));
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(responses[i].ok()) << responses[i].error;
    EXPECT_EQ(responses[i].status, 502) << responses[i].body;
    EXPECT_LT(responses[i].elapsed, Duration(2000));
  }
}

// An endpoint whose connects never complete, as a host that went away without a RST: a listener
// with a backlog of 0 that never accepts, its one accept-queue slot taken by a connection of its
// own, so the kernel drops every further SYN.
class BlackholeEndpoint {
 public:
  BlackholeEndpoint() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    filler_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ok_ = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
          ::listen(listen_fd_, 0) == 0 &&
          ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
          ::connect(filler_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    port_ = ntohs(a.sin_port);
  }
  ~BlackholeEndpoint() {
    ::close(filler_fd_);
    ::close(listen_fd_);
  }
  bool ok() const { return ok_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int listen_fd_ = -1;
  int filler_fd_ = -1;
  uint16_t port_ = 0;
  bool ok_ = false;
};

// Requests queued behind max_connections for an endpoint whose connects time out: one connect
// timeout fails them all (as Envoy purges its pending streams), where each used to wait out a
// connect timeout of its own, one after another (the last of four at 4 x 500 ms).
TEST_F(ProxyTest, AConnectTimeoutFailsEveryRequestQueuedBehindIt) {
  BlackholeEndpoint blackhole;
  ASSERT_TRUE(blackhole.ok());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 10s
clusters:
  - name: main
    connect_timeout: 500ms
    limits: { max_connections: 1 }
    endpoints: [ { address: ${UP} } ]
)",
                            {{"UP", blackhole.address()}}));
  constexpr int kClients = 4;
  const std::vector<Response> responses = getAtOnce(kClients, Duration(15000));
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(responses[i].ok()) << responses[i].error;
    EXPECT_EQ(responses[i].status, 502) << responses[i].body;
    EXPECT_NE(responses[i].body.find("connect timeout"), std::string::npos) << responses[i].body;
    // One connect timeout, with room to spare; two in a row would be 1000 ms.
    EXPECT_LT(responses[i].elapsed, Duration(950));
  }
  // Fewer connects than requests: the queued ones were not each given a connect of their own.
  EXPECT_LT(remora_.metric("remora_upstream_connect_failures_total", {{"cluster", "main"}})
                .value_or(kClients),
            kClients);
}

// The same with a healthy second endpoint and connect-failure retries: the requests queued on the
// black hole are retried on the other endpoint after one connect timeout, not one after another.
TEST_F(ProxyTest, RequestsQueuedOnABlackholedEndpointAreRetriedElsewhereAtOnce) {
  BlackholeEndpoint blackhole;
  ASSERT_TRUE(blackhole.ok());
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 10s
        retry:
          attempts: 2
          on: [connect-failure]
          backoff: { base: 1ms, max: 5ms }
clusters:
  - name: main
    connect_timeout: 500ms
    lb_policy: round_robin
    limits: { max_connections: 1 }
    endpoints: [ { address: ${HOLE} }, { address: ${UP} } ]
)",
                            {{"HOLE", blackhole.address()}, {"UP", up_.address()}}));
  constexpr int kClients = 6;
  const std::vector<Response> responses = getAtOnce(kClients, Duration(15000));
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(responses[i].ok()) << responses[i].error;
    EXPECT_EQ(responses[i].status, 200) << responses[i].body;
    EXPECT_LT(responses[i].elapsed, Duration(950));
  }
}

TEST_F(ProxyTest, UpstreamResetBeforeHeadersGets502) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/x", {{"x-fake-reset", "headers"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502);
  // The proxy itself is fine afterwards.
  Response ok = client.get("/x");
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
}

TEST_F(ProxyTest, UpstreamResetMidBodyIsNotPassedOffAsComplete) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/x", {{"x-fake-reset", "mid-body"}, {"x-fake-body-size", "200000"}});
  // Headers were already forwarded, so the client must see an incomplete response or a reset,
  // never a complete 200 with a short body.
  EXPECT_FALSE(r.ok() && r.status == 200)
      << "status " << r.status << ", " << r.body.size() << " bytes";
  HttpClient fresh = remora_.client();
  Response ok = fresh.get("/x");
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
}

// An upstream that sends more than its response (a second answer, a miscounted body) has lost
// track of the exchange: its connection is closed, never given the next request, whose client
// would otherwise be answered with those bytes (response queue poisoning).
TEST_F(ProxyTest, AnUpstreamConnectionWithBytesAfterItsResponseIsNotReused) {
  startBasic();
  const std::string poison = "HTTP/1.1 200 OK\\r\\ncontent-length: 8\\r\\n\\r\\npoisoned";
  for (const char* chunked : {"0", "1"}) {
    SCOPED_TRACE(std::string("chunked: ") + chunked);
    HttpClient client = remora_.client();
    Response first = client.get("/first", {{"x-fake-trailing-bytes", poison},
                                           {"x-fake-chunked", chunked}});
    ASSERT_TRUE(first.ok()) << first.error;
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(parseJson(first.body).value("path", ""), "/first") << first.body;
    Response second = client.get("/second");
    ASSERT_TRUE(second.ok()) << second.error;
    EXPECT_EQ(parseJson(second.body).value("path", ""), "/second") << second.body;
    EXPECT_NE(second.header("x-connection-id"), first.header("x-connection-id"))
        << "the upstream connection was reused";
  }
}

TEST_F(ProxyTest, UpstreamHangPastRouteTimeoutGets504) {
  startBasic({{"ROUTE_TIMEOUT", "400ms"}});
  HttpClient client = remora_.client();
  Response r = client.get("/x", {{"x-fake-hang", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(r.elapsed, Duration(350));
  EXPECT_LT(r.elapsed, Duration(3000));
  // The hung upstream connection was given up.
  EXPECT_TRUE(waitFor([&] { return statsOf(up_).active == 0; }, Duration(3000)));
}

// The connection's timer is re-armed lazily (only for an earlier deadline): a short route timeout
// on a keep-alive connection, whose timer was last armed for the longer request-headers timeout,
// must still fire on time.
TEST_F(ProxyTest, RouteTimeoutFiresOnTimeOnAKeepAliveConnection) {
  startBasic({{"ROUTE_TIMEOUT", "400ms"}, {"HEADERS_TIMEOUT", "20s"}});
  HttpClient client = remora_.client();
  for (int i = 0; i < 3; ++i) {
    Response ok = client.get("/x");
    ASSERT_TRUE(ok.ok()) << ok.error;
    EXPECT_EQ(ok.status, 200);
  }
  Response r = client.get("/x", {{"x-fake-hang", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(r.elapsed, Duration(350));
  EXPECT_LT(r.elapsed, Duration(3000));
  // And the connection goes on: the next request is served.
  Response after = client.get("/x");
  ASSERT_TRUE(after.ok()) << after.error;
  EXPECT_EQ(after.status, 200);
}

TEST_F(ProxyTest, NoHealthyEndpointGets503) {
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 2s
clusters:
  - name: main
    connect_timeout: 500ms
    endpoints: [ { address: ${UP} } ]
    health_check:
      path: /healthz
      interval: 200ms
      timeout: 100ms
      healthy_threshold: 1
      unhealthy_threshold: 1
)",
                            {{"UP", up_.address()}}));
  HttpClient client = remora_.client();
  ASSERT_TRUE(waitFor([&] { return client.get("/x").status == 200; }, Duration(5000)));
  ASSERT_TRUE(up_.control("healthz_status=503"));
  EXPECT_TRUE(waitFor([&] { return client.get("/x").status == 503; }, Duration(5000)))
      << "the endpoint never became unhealthy";
  ASSERT_TRUE(up_.control("clear"));
  EXPECT_TRUE(waitFor([&] { return client.get("/x").status == 200; }, Duration(5000)))
      << "the endpoint never became healthy again";
}

// --- Routing. ---

TEST_F(ProxyTest, RouteMatchingFirstMatchWins) {
  FakeUpstream exact(tmp_, "exact");
  FakeUpstream post(tmp_, "post");
  FakeUpstream canary(tmp_, "canary");
  FakeUpstream api(tmp_, "api");
  FakeUpstream shadowed(tmp_, "shadowed");
  FakeUpstream fallback(tmp_, "default");
  for (FakeUpstream* u : {&exact, &post, &canary, &api, &shadowed, &fallback}) {
    ASSERT_TRUE(u->start());
  }
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { path: /exact }
        cluster: exact
      - match: { prefix: /api/, method: POST }
        cluster: post
      - match: { prefix: /api/, headers: { x-canary: "1" } }
        cluster: canary
      - match: { prefix: /api/ }
        cluster: api
      - match: { prefix: /api/v2/ }
        cluster: shadowed
      - match: { prefix: / }
        cluster: default
clusters:
  - { name: exact, endpoints: [ { address: ${EXACT} } ] }
  - { name: post, endpoints: [ { address: ${POST} } ] }
  - { name: canary, endpoints: [ { address: ${CANARY} } ] }
  - { name: api, endpoints: [ { address: ${API} } ] }
  - { name: shadowed, endpoints: [ { address: ${SHADOWED} } ] }
  - { name: default, endpoints: [ { address: ${DEFAULT} } ] }
)",
                            {{"EXACT", exact.address()},
                             {"POST", post.address()},
                             {"CANARY", canary.address()},
                             {"API", api.address()},
                             {"SHADOWED", shadowed.address()},
                             {"DEFAULT", fallback.address()}}));
  HttpClient client = remora_.client();
  auto upstreamFor = [&](std::string_view method, std::string_view path,
                         const Headers& headers = {}) {
    Response r = client.request(method, path, headers);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.error;
    EXPECT_EQ(r.status, 200) << method << " " << path;
    return r.header("x-upstream-name");
  };
  EXPECT_EQ(upstreamFor("GET", "/exact"), "exact");
  EXPECT_EQ(upstreamFor("GET", "/exact?q=1"), "exact") << "the query is not part of the path";
  EXPECT_EQ(upstreamFor("GET", "/exact/more"), "default") << "path is an exact match";
  EXPECT_EQ(upstreamFor("GET", "/exactly"), "default");
  EXPECT_EQ(upstreamFor("POST", "/api/orders"), "post");
  EXPECT_EQ(upstreamFor("GET", "/api/orders", {{"x-canary", "1"}}), "canary");
  EXPECT_EQ(upstreamFor("GET", "/api/orders", {{"X-Canary", "1"}}), "canary")
      << "header names are case-insensitive";
  EXPECT_EQ(upstreamFor("GET", "/api/orders", {{"x-canary", "2"}}), "api");
  EXPECT_EQ(upstreamFor("GET", "/api/orders"), "api");
  EXPECT_EQ(upstreamFor("GET", "/api/v2/orders"), "api") << "first match wins";
  EXPECT_EQ(upstreamFor("GET", "/apix"), "default");
  EXPECT_EQ(upstreamFor("GET", "/"), "default");
  EXPECT_EQ(statsOf(shadowed).requests, 0u);
}

// --- Headers added and removed on the way. ---

TEST_F(ProxyTest, HopByHopHeadersRemovedAndForwardingHeadersAdded) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/headers", {{"Connection", "keep-alive, X-Custom-Hop"},
                                       {"Keep-Alive", "timeout=5"},
                                       {"Proxy-Connection", "keep-alive"},
                                       {"TE", "trailers"},
                                       {"Trailer", "x-checksum"},
                                       {"Upgrade", "h2c"},
                                       {"Proxy-Authorization", "Basic c2VjcmV0"},
                                       {"Proxy-Authenticate", "Basic"},
                                       {"X-Custom-Hop", "drop me"},
                                       {"X-End-To-End", "keep me"}});
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200);
  auto echo = parseJson(r.body);
  ASSERT_FALSE(echo.is_discarded()) << r.body;
  const auto& h = echo["headers"];
  for (const char* name : {"keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                           "proxy-authorization", "proxy-authenticate", "x-custom-hop"}) {
    EXPECT_FALSE(h.contains(name)) << name << " reached the upstream: " << h.dump();
  }
  if (h.contains("connection")) {
    // A proxy may send its own "connection: keep-alive", never the client's tokens.
    EXPECT_EQ(h["connection"].get<std::string>().find("X-Custom-Hop"), std::string::npos);
    EXPECT_EQ(h["connection"].get<std::string>().find("x-custom-hop"), std::string::npos);
  }
  EXPECT_EQ(h.value("x-end-to-end", ""), "keep me");
  EXPECT_NE(h.value("x-forwarded-for", "").find("127.0.0.1"), std::string::npos) << h.dump();
  EXPECT_EQ(h.value("x-forwarded-proto", ""), "http");
  const std::string id1 = h.value("x-request-id", "");
  EXPECT_FALSE(id1.empty()) << "no x-request-id generated";

  // Generated ids differ per request.
  Response r2 = client.get("/headers");
  ASSERT_TRUE(r2.ok()) << r2.error;
  const std::string id2 = parseJson(r2.body)["headers"].value("x-request-id", "");
  EXPECT_FALSE(id2.empty());
  EXPECT_NE(id1, id2);
}

TEST_F(ProxyTest, HopByHopResponseHeadersRemovedEndToEndKept) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/x", {{"x-fake-response-header", "Connection: keep-alive, X-Custom-Hop"},
                                 {"x-fake-response-header", "Keep-Alive: timeout=5"},
                                 {"x-fake-response-header", "Proxy-Connection: keep-alive"},
                                 {"x-fake-response-header", "Upgrade: h2c"},
                                 {"x-fake-response-header", "Trailer: x-checksum"},
                                 {"x-fake-response-header", "Proxy-Authenticate: Basic"},
                                 {"x-fake-response-header", "X-Custom-Hop: drop me"},
                                 {"x-fake-response-header", "X-Remora-Attempts: 7"},
                                 {"x-fake-response-header", "X-End-To-End: Keep Me"},
                                 {"x-fake-response-header", "X-Empty:"}});
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200);
  for (const char* name : {"keep-alive", "proxy-connection", "upgrade", "trailer",
                           "proxy-authenticate", "x-custom-hop"}) {
    EXPECT_FALSE(r.headers.has(name)) << name << " reached the client";
  }
  // A proxy may send its own connection header, never the upstream's tokens.
  EXPECT_EQ(r.header("connection").find("X-Custom-Hop"), std::string::npos);
  EXPECT_EQ(r.headers.all("x-remora-attempts"), std::vector<std::string>{"1"})
      << "the inner proxy's x-remora-attempts must be replaced by this hop's";
  EXPECT_EQ(r.header("x-end-to-end"), "Keep Me");
  EXPECT_TRUE(r.headers.has("x-empty"));
  EXPECT_EQ(r.header("x-upstream-name"), "main");
  EXPECT_EQ(r.headers.count("content-length"), 1u);
  EXPECT_TRUE(r.keep_alive);
}

// llhttp lets a space through in a response's header names. RFC 9112 5.1: a proxy must remove
// whitespace before the colon; a name with a space inside is no token, and no client should have
// to guess what it means: 502.
TEST_F(ProxyTest, ResponseHeaderNameWhitespace) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get(
      "/x", {{"x-fake-response-header", "X-Spaced : 1"}, {"x-fake-response-header", "X-After: 2"}});
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-spaced"), "1");
  EXPECT_EQ(r.header("x-after"), "2");
  for (const auto& [name, value] : r.headers) {
    EXPECT_EQ(name.find(' '), std::string::npos) << "'" << name << "' reached the client";
  }

  Response bad = client.get("/x", {{"x-fake-response-header", "X Inner: 1"}});
  ASSERT_TRUE(bad.ok()) << bad.error;
  EXPECT_EQ(bad.status, 502);
  EXPECT_NE(bad.body.find("has a space in it"), std::string::npos) << bad.body;
}

TEST_F(ProxyTest, ClientRequestIdIsKept) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/id", {{"x-request-id", "abc-123"}});
  ASSERT_TRUE(r.ok()) << r.error;
  auto echo = parseJson(r.body);
  EXPECT_EQ(echo["headers"].value("x-request-id", ""), "abc-123");
  EXPECT_EQ(echo["header_list"].size(), echo["headers"].size())
      << "a header was duplicated: " << echo["header_list"].dump();

  // Several: the first that is not empty is the request's id, and the only one sent on.
  r = client.get("/id",
                 {{"x-request-id", ""}, {"x-request-id", "rid-2"}, {"x-request-id", "rid-3"}});
  ASSERT_TRUE(r.ok()) << r.error;
  echo = parseJson(r.body);
  EXPECT_EQ(echo["headers"].value("x-request-id", ""), "rid-2") << echo["header_list"].dump();
  EXPECT_EQ(echo["header_list"].size(), echo["headers"].size())
      << "a header was duplicated: " << echo["header_list"].dump();
}

TEST_F(ProxyTest, ForwardedHeadersAreJoinedAndSanitized) {
  startBasic();
  HttpClient client = remora_.client();
  Response r = client.get("/fwd", {{"X-Forwarded-For", "203.0.113.7"},
                                   {"x-forwarded-proto", "https"},
                                   {"x-a", "1"},
                                   {"x-forwarded-for", "198.51.100.2, 10.0.0.1"},
                                   {"x-forwarded-for", ""},
                                   {"x-request-id", ""},
                                   {"x-forwarded-client-cert", "URI=spiffe://mesh/forged"},
                                   {"x-remora-priority", "critical"},
                                   {"x-b", "2"}});
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200) << r.body;
  auto echo = parseJson(r.body);
  ASSERT_FALSE(echo.is_discarded()) << r.body;
  std::vector<std::string> lines;
  for (const auto& pair : echo["header_list"]) {
    lines.push_back(pair[0].get<std::string>() + ": " + pair[1].get<std::string>());
  }
  // Every x-forwarded-for line of the client, in order, then the client's own address, in one
  // line; the client's scheme is kept; an empty x-request-id is replaced by a generated one; the
  // forged certificate and the proxy-to-proxy hint do not reach the application.
  ASSERT_EQ(lines.size(), 6u) << echo["header_list"].dump();
  EXPECT_EQ(std::vector<std::string>(lines.begin(), lines.begin() + 5),
            (std::vector<std::string>{"host: 127.0.0.1:" + std::to_string(client.port()),
                                      "x-forwarded-proto: https", "x-a: 1", "x-b: 2",
                                      "x-forwarded-for: 203.0.113.7, 198.51.100.2, 10.0.0.1, "
                                      "127.0.0.1"}))
      << echo["header_list"].dump();
  EXPECT_EQ(echo["headers"].count("x-forwarded-client-cert"), 0u);
  EXPECT_EQ(echo["headers"].count("x-remora-priority"), 0u);
  EXPECT_EQ(echo["headers"]["x-request-id"].get<std::string>().size(), 36u)
      << echo["header_list"].dump();
  EXPECT_EQ(echo["header_list"].size(), echo["headers"].size())
      << "a header was duplicated: " << echo["header_list"].dump();
}

TEST_F(ProxyTest, EveryProxiedResponseCarriesAttempts) {
  startBasic();
  HttpClient client = remora_.client();
  Response ok = client.get("/x");
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.header("x-remora-attempts"), "1");
  // An upstream error status is passed through as is, with the header too.
  Response err = client.get("/x", {{"x-fake-status", "503"}});
  ASSERT_TRUE(err.ok()) << err.error;
  EXPECT_EQ(err.status, 503);
  EXPECT_EQ(err.header("x-remora-attempts"), "1");
  EXPECT_EQ(err.header("x-upstream-name"), "main");
}

TEST_F(ProxyTest, RetriesCountInAttemptsHeader) {
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 5s
        retry:
          attempts: 2
          on: [5xx]
          backoff: { base: 5ms, max: 20ms }
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
)",
                            {{"UP", up_.address()}}));
  // Every 2nd upstream request fails: the first try of each request after the first fails and
  // its retry succeeds.
  ASSERT_TRUE(up_.control("fail_ratio=0.5"));
  HttpClient client = remora_.client();
  int retried = 0;
  for (int i = 0; i < 10; ++i) {
    Response r = client.get("/x");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
    if (r.header("x-remora-attempts") == "2") ++retried;
  }
  EXPECT_GE(retried, 8);
  EXPECT_EQ(statsOf(up_).requests, 10u + static_cast<uint64_t>(retried));
}

// --- Reload and drain. ---

constexpr std::string_view kTwoClusterConfig = R"(
admin: { address: ${ADMIN} }
workers: 2
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: ${TARGET}
        timeout: 5s
clusters:
  - name: a
    connect_timeout: 500ms
    endpoints: [ { address: ${A} } ]
  - name: b
    connect_timeout: 500ms
    endpoints: [ { address: ${B} } ]
)";

TEST_F(ProxyTest, SighupReloadMovesTrafficWithoutFailures) {
  FakeUpstream a(tmp_, "a");
  FakeUpstream b(tmp_, "b");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  Vars vars{{"A", a.address()}, {"B", b.address()}, {"TARGET", "a"}};
  ASSERT_TRUE(remora_.start(kTwoClusterConfig, vars));

  LoadOptions options;
  options.port = remora_.listenPort();
  options.threads = 3;
  BackgroundLoad load(options);
  ASSERT_TRUE(waitFor([&] { return statsOf(a).requests >= 50; }, Duration(10000)));

  vars["TARGET"] = "b";
  ASSERT_TRUE(remora_.reload(kTwoClusterConfig, vars));
  EXPECT_TRUE(waitFor([&] { return statsOf(b).requests >= 100; }, Duration(10000)))
      << "traffic did not move to b";
  LoadResult result = load.stop();
  EXPECT_EQ(result.failures, 0u) << result.summary();
  EXPECT_TRUE(result.allStatus(200)) << result.summary();
  EXPECT_GT(result.by_header["a"], 0u) << result.summary();
  EXPECT_GT(result.by_header["b"], 0u) << result.summary();

  // From now on nothing goes to a, also on client connections opened before the reload.
  ASSERT_TRUE(a.resetStats());
  HttpClient client = remora_.client();
  for (int i = 0; i < 20; ++i) {
    Response r = client.get("/after");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.header("x-upstream-name"), "b");
  }
  EXPECT_EQ(statsOf(a).requests, 0u);
}

TEST_F(ProxyTest, InvalidConfigOnSighupIsRejectedAndOldConfigKeepsServing) {
  FakeUpstream a(tmp_, "a");
  FakeUpstream b(tmp_, "b");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  Vars vars{{"A", a.address()}, {"B", b.address()}, {"TARGET", "a"}};
  ASSERT_TRUE(remora_.start(kTwoClusterConfig, vars));

  LoadOptions options;
  options.port = remora_.listenPort();
  options.threads = 2;
  BackgroundLoad load(options);
  ASSERT_TRUE(waitFor([&] { return load.completed() >= 20; }, Duration(10000)));

  const double nacks_before =
      remora_.metric("remora_config_updates_total", {{"result", "nack"}}).value_or(0);
  // A route naming a cluster that does not exist: the whole file is rejected.
  vars["TARGET"] = "no-such-cluster";
  ASSERT_TRUE(remora_.reload(kTwoClusterConfig, vars));
  EXPECT_TRUE(waitFor(
      [&] {
        return remora_.metric("remora_config_updates_total", {{"result", "nack"}}).value_or(0) >
               nacks_before;
      },
      Duration(5000)))
      << "the rejected reload was not counted in remora_config_updates_total{result=\"nack\"}";
  // Not even YAML.
  ASSERT_TRUE(writeFileAtomic(remora_.configPath(), "listeners: [ {{{ not yaml\n"));
  ASSERT_TRUE(remora_.reload());
  EXPECT_TRUE(waitFor(
      [&] {
        return remora_.metric("remora_config_updates_total", {{"result", "nack"}}).value_or(0) >
               nacks_before + 1;
      },
      Duration(5000)));

  const uint64_t a_before = statsOf(a).requests;
  ASSERT_TRUE(waitFor([&] { return statsOf(a).requests >= a_before + 20; }, Duration(5000)))
      << "the old config stopped serving";
  LoadResult result = load.stop();
  EXPECT_TRUE(result.allStatus(200)) << result.summary();
  EXPECT_EQ(result.by_header.count("b"), 0u) << result.summary();
  EXPECT_TRUE(remora_.isReady());
  EXPECT_TRUE(remora_.running());

  // A good file afterwards still applies.
  vars["TARGET"] = "b";
  ASSERT_TRUE(remora_.reload(kTwoClusterConfig, vars));
  HttpClient client = remora_.client();
  EXPECT_TRUE(
      waitFor([&] { return client.get("/x").header("x-upstream-name") == "b"; }, Duration(5000)));
}

// A reload that leaves a cluster as it was keeps that cluster's balancer: the rotation goes on
// where it was instead of starting over (Snapshot::build shares the unchanged endpoint set).
TEST_F(ProxyTest, ReloadKeepsTheRotationOfUnchangedClusters) {
  constexpr std::string_view kConfig = R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: /other }
        cluster: other
      - match: { prefix: / }
        cluster: rr
clusters:
  - name: rr
    connect_timeout: ${RR_TIMEOUT}
    endpoints: [ { address: ${A} }, { address: ${B} }, { address: ${C} } ]
  - name: other
    connect_timeout: ${OTHER_TIMEOUT}
    endpoints: [ { address: ${A} } ]
)";
  FakeUpstream a(tmp_, "a");
  FakeUpstream b(tmp_, "b");
  FakeUpstream c(tmp_, "c");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(c.start());
  Vars vars{{"A", a.address()},
            {"B", b.address()},
            {"C", c.address()},
            {"RR_TIMEOUT", "500ms"},
            {"OTHER_TIMEOUT", "500ms"}};
  ASSERT_TRUE(remora_.start(kConfig, vars));
  HttpClient client = remora_.client();
  auto next = [&] {
    Response r = client.get("/x");
    EXPECT_EQ(r.status, 200) << r.error;
    return r.header("x-upstream-name");
  };
  auto reloadWith = [&](const std::string& key, const std::string& value) {
    const double applied =
        remora_.metric("remora_config_updates_total", {{"source", "file"}, {"result", "ack"}})
            .value_or(0);
    vars[key] = value;
    ASSERT_TRUE(remora_.reload(kConfig, vars));
    ASSERT_TRUE(waitFor(
        [&] {
          return remora_
                     .metric("remora_config_updates_total",
                             {{"source", "file"}, {"result", "ack"}})
                     .value_or(0) > applied;
        },
        Duration(5000)))
        << "the reload was not applied";
  };

  const std::string first = next();
  const std::string second = next();
  ASSERT_NE(first, second);
  reloadWith("OTHER_TIMEOUT", "600ms");  // only `other` changes
  const std::string third = next();
  EXPECT_NE(third, first) << "the rotation of rr started over on a reload that did not touch it";
  EXPECT_NE(third, second);

  // Changing rr itself gives it a new balancer: every endpoint still gets its share.
  reloadWith("RR_TIMEOUT", "700ms");
  std::set<std::string> seen;
  for (int i = 0; i < 3; ++i) seen.insert(next());
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(ProxyTest, SigtermDrainsInFlightRequestAndExitsZero) {
  startBasic();
  const uint16_t port = remora_.listenPort();
  Response slow;
  std::thread t([&slow, port] {
    HttpClient client(port);
    slow = client.get("/slow", {{"x-fake-delay-ms", "500"}});
  });
  // SIGTERM only once the slow request is in flight at the upstream.
  const bool in_flight = waitFor([&] { return statsOf(up_).active == 1; }, Duration(5000));
  EXPECT_TRUE(in_flight);
  const auto sent = Clock::now();
  std::optional<int> code;
  if (in_flight) code = remora_.terminate(Duration(10000));
  t.join();
  ASSERT_TRUE(in_flight);
  ASSERT_TRUE(slow.ok()) << slow.error;
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(code, std::optional<int>(0));
  EXPECT_LT(Clock::now() - sent, Duration(5000)) << "drain waited for more than the request";
  // It stopped accepting: nothing listens any more.
  HttpClient after = remora_.client(Duration(1000));
  EXPECT_EQ(after.get("/x").status, 0);
}

// --- Admin API. ---

TEST_F(ProxyTest, AdminApi) {
  startBasic();
  HttpClient client = remora_.client();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(client.get("/x").status, 200);
  ASSERT_EQ(client.get("/x", {{"x-fake-status", "503"}}).status, 503);

  EXPECT_EQ(remora_.admin("/ready").status, 200);
  // Counted when the stream ends, which may be just after the client read its response.
  EXPECT_TRUE(waitFor([&] {
    return remora_.metric("remora_downstream_requests_total",
                          {{"listener", "ingress"}, {"code", "200"}}) == 3.0 &&
           remora_.metric("remora_downstream_requests_total",
                          {{"listener", "ingress"}, {"code", "503"}}) == 1.0;
  })) << remora_.stats();
  EXPECT_EQ(remora_.metric("remora_upstream_requests_total", {{"cluster", "main"}}), 4.0);

  Response config = remora_.admin("/config");
  ASSERT_EQ(config.status, 200);
  auto cj = parseJson(config.body);
  ASSERT_FALSE(cj.is_discarded()) << config.body;
  EXPECT_NE(config.body.find("file"), std::string::npos) << "source missing: " << config.body;
  EXPECT_NE(config.body.find(up_.address()), std::string::npos) << config.body;

  Response clusters = remora_.admin("/clusters");
  ASSERT_EQ(clusters.status, 200);
  ASSERT_FALSE(parseJson(clusters.body).is_discarded()) << clusters.body;
  EXPECT_NE(clusters.body.find("main"), std::string::npos) << clusters.body;
  EXPECT_NE(clusters.body.find(up_.address()), std::string::npos) << clusters.body;
}

// --- remora --validate. ---

TEST_F(ProxyTest, ValidateAcceptsGoodFile) {
  constexpr std::string_view kGood = R"(admin: { address: 127.0.0.1:9901 }
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: / }
        cluster: main
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)";
  ValidateResult r = RemoraProcess::validate(tmp_, "good.yaml", kGood);
  EXPECT_EQ(r.exit_code, std::optional<int>(0)) << r.output;
  // The contract's "--config FILE ... --validate" reading checks the same file.
  ValidateResult config_form =
      RemoraProcess::validate(tmp_, "good2.yaml", kGood, Duration(10000), /*config_form=*/true);
  EXPECT_EQ(config_form.exit_code, std::optional<int>(0)) << config_form.output;
  EXPECT_NE(config_form.output.find("good2.yaml: OK"), std::string::npos) << config_form.output;
}

TEST_F(ProxyTest, ValidateAcceptsClustersOnlyTheControlPlaneDefines) {
  // The running proxy accepts routes to clusters a control plane will push; --validate agrees.
  ValidateResult r = RemoraProcess::validate(tmp_, "cp.yaml", R"(admin: { address: 127.0.0.1:9901 }
control_plane: { address: 127.0.0.1:18000 }
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: / }
        cluster: pushed-later
)");
  EXPECT_EQ(r.exit_code, std::optional<int>(0)) << r.output;
}

TEST_F(ProxyTest, ValidateRejectsBadFileWithLocations) {
  // Line 5: unknown key. Line 8: a duration that is not one. Both are reported in one run.
  ValidateResult r = RemoraProcess::validate(tmp_, "bad.yaml", R"(admin: { address: 127.0.0.1:9901 }
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    bogus_key: 1
    routes:
      - match: { prefix: / }
        timeout: banana
        cluster: main
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)");
  EXPECT_EQ(r.exit_code, std::optional<int>(1)) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(bad\.yaml:5:\d+: )"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(bad\.yaml:8:\d+: )"))) << r.output;
  ValidateResult config_form = RemoraProcess::validate(
      tmp_, "bad2.yaml", "listeners: 5\n", Duration(10000), /*config_form=*/true);
  EXPECT_EQ(config_form.exit_code, std::optional<int>(1)) << config_form.output;
  EXPECT_NE(config_form.output.find("bad2.yaml:1:"), std::string::npos) << config_form.output;
}

TEST_F(ProxyTest, ValidateRejectsUnknownCluster) {
  ValidateResult r =
      RemoraProcess::validate(tmp_, "refs.yaml", R"(admin: { address: 127.0.0.1:9901 }
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: / }
        cluster: nope
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)");
  EXPECT_EQ(r.exit_code, std::optional<int>(1)) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(refs\.yaml:(6|7):\d+: .*nope)")))
      << r.output;
}

}  // namespace
}  // namespace remora::itest
