// Remora end to end against hostile or broken clients (issue 5, "hardening"): request smuggling
// variants, size limits, clients that stall or never read, many idle connections, the listener's
// max_connections cap, the admin API's default address, and regressions for the bugs the fuzzers
// (tests/fuzz) found.
//
// Already covered elsewhere, not repeated here: Content-Length with Transfer-Encoding (CL first),
// two different Content-Lengths, a garbage request line, headers over max_request_headers_kb
// (431) and dribbled headers (408) in proxy_integration_test.cc; "gzip, chunked" (501), HTTP/1.0,
// half-closed clients and pipelining in proxy_edge_test.cc.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.h"

#ifndef REMORA_TARGET_DEFINED
#define REMORA_TARGET_DEFINED 0
#endif

namespace remora::itest {
namespace {

constexpr std::string_view kConfig = R"(
admin: { address: ${ADMIN} }
workers: 2
drain_timeout: 2s
listeners:
  - name: ingress
    address: ${LISTEN}
    idle_timeout: ${IDLE_TIMEOUT}
    request_headers_timeout: 5s
    max_request_headers_kb: ${MAX_HEADERS_KB}
    ${MAX_CONNECTIONS}
    routes:
      - match: { prefix: /fb }
        cluster: main
        timeout: ${ROUTE_TIMEOUT}
        fallback: { cluster: spare }
      - match: { prefix: / }
        cluster: main
        timeout: ${ROUTE_TIMEOUT}
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
  - name: spare
    endpoints: [ { address: ${UP} } ]
)";

// VmRSS of a process in KiB, from /proc/<pid>/status; 0 if unreadable.
uint64_t rssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

// "Max open files" soft and hard limits of a process, from /proc/<pid>/limits.
std::pair<uint64_t, uint64_t> openFileLimits(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields(line.substr(14));
      std::string soft, hard;
      fields >> soft >> hard;
      auto num = [](const std::string& s) -> uint64_t {
        return s == "unlimited" ? UINT64_MAX : std::stoull(s);
      };
      return {num(soft), num(hard)};
    }
  }
  return {0, 0};
}

// A plain blocking TCP connection to 127.0.0.1:port; -1 on failure. `rcvbuf` > 0 shrinks the
// receive buffer before connecting (a client that reads slowly, or not at all).
int connectTo(uint16_t port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED) GTEST_SKIP() << "the build has no `remora` target yet";
    ASSERT_TRUE(remoraBinaryExists()) << "not built: " << remoraBinary();
  }

  void start(const Vars& overrides = {}) {
    ASSERT_TRUE(up_.start());
    Vars vars{{"UP", up_.address()},
              {"IDLE_TIMEOUT", "60s"},
              {"MAX_HEADERS_KB", "8"},
              {"MAX_CONNECTIONS", ""},
              {"ROUTE_TIMEOUT", "15s"}};
    for (const auto& [k, v] : overrides) vars[k] = v;
    ASSERT_TRUE(remora_.start(kConfig, vars));
  }

  UpstreamStats upstreamStats() {
    auto s = up_.stats();
    EXPECT_TRUE(s.has_value()) << "GET /__stats of the fake upstream failed";
    return s.value_or(UpstreamStats{});
  }

  double metric(std::string_view name, const Labels& labels = {}) {
    return remora_.metric(name, labels).value_or(-1);
  }

  TempDir tmp_;
  FakeUpstream up_{tmp_, "main"};
  RemoraProcess remora_{tmp_};
};

// --- Request smuggling and malformed requests: refused, connection closed, upstream untouched. --

struct BadRequest {
  const char* name;
  std::string bytes;
  int status;
  // The head is fine and only the body is not: the proxy has started streaming the request to
  // the upstream (as Envoy does) when it finds out, and aborts that upstream request.
  bool body_error = false;
};

std::vector<BadRequest> badRequests() {
  const std::string h = "host: x\r\n";
  const std::string post = "POST /smuggle HTTP/1.1\r\n" + h;
  const std::string te = post + "transfer-encoding: chunked\r\n\r\n";
  return {
      // Two framings at once, in the order not tested elsewhere, and every duplicate form.
      {"TE then CL", te.substr(0, te.size() - 2) + "content-length: 5\r\n\r\n0\r\n\r\n", 400},
      {"duplicate equal CL", post + "content-length: 5\r\ncontent-length: 5\r\n\r\nhello", 400},
      {"CL list", post + "content-length: 5, 5\r\n\r\nhello", 400},
      {"negative CL", post + "content-length: -5\r\n\r\nhello", 400},
      {"CL with plus sign", post + "content-length: +5\r\n\r\nhello", 400},
      {"CL overflow", post + "content-length: 184467440737095516160\r\n\r\nhello", 400},
      // Line folding: forwarded as is, a folded value hides a header from one parser but not
      // another.
      {"obs-fold", "GET / HTTP/1.1\r\n" + h + "x-a: 1\r\n folded\r\n\r\n", 400},
      {"obs-fold tab", "GET / HTTP/1.1\r\n" + h + "x-a: 1\r\n\tfolded\r\n\r\n", 400},
      {"obs-fold TE", post + "transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
      // Chunk sizes.
      {"chunk size overflow", te + "FFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n", 400, true},
      {"negative chunk size", te + "-1\r\nabc\r\n0\r\n\r\n", 400, true},
      {"hex junk chunk size", te + "3g\r\nabc\r\n0\r\n\r\n", 400, true},
      {"0x chunk size", te + "0x3\r\nabc\r\n0\r\n\r\n", 400, true},
      {"chunk data longer than size", te + "3\r\nabcX0\r\n\r\n", 400, true},
      {"LF-only chunk lines", te + "3\nabc\n0\n\n", 400, true},
      // Transfer codings other than chunked alone (gzip, chunked is in proxy_edge_test).
      {"TE chunked, identity", post + "transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
      {"TE twice", post + "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      {"TE identity", post + "transfer-encoding: identity\r\n\r\n", 501},
      {"TE xchunked", post + "transfer-encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
      {"TE in HTTP/1.0", "POST /smuggle HTTP/1.0\r\n" + h + "transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      // Header syntax.
      {"space before colon", "GET / HTTP/1.1\r\n" + h + "x-a : 1\r\n\r\n", 400},
      {"space before colon in CL", post + "content-length : 5\r\n\r\nhello", 400},
      {"empty header name", "GET / HTTP/1.1\r\n" + h + ": v\r\n\r\n", 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\n") + h + "x-a: a" + std::string(1, '\0') +
                           "b\r\n\r\n",
       400},
      {"CR in value", "GET / HTTP/1.1\r\n" + h + "x-a: a\rb\r\n\r\n", 400},
      {"bare LF in value", "GET / HTTP/1.1\r\n" + h + "x-a: a\nb: c\r\n\r\n", 400},
      {"LF-only head", "GET / HTTP/1.1\nhost: x\n\n", 400},
      {"two host headers", "GET / HTTP/1.1\r\n" + h + "host: y\r\n\r\n", 400},
      // Request targets a reverse proxy must not route (or routes to the wrong place).
      // absolute-form is taken as RFC 9112 3.2.2 asks (AbsoluteFormIsForwardedInOriginForm),
      // only for http:// and a valid host.
      {"absolute-form https", "GET https://evil.example/x HTTP/1.1\r\n" + h + "\r\n", 400},
      {"absolute-form userinfo", "GET http://u@evil.example/x HTTP/1.1\r\n" + h + "\r\n", 400},
      {"absolute-form no host", "GET http:///x HTTP/1.1\r\n" + h + "\r\n", 400},
      {"absolute-form two hosts", "GET http://a/x HTTP/1.1\r\nhost: b\r\nhost: c\r\n\r\n", 400},
      {"host with a path", "GET / HTTP/1.1\r\nhost: evil.example/x\r\n\r\n", 400},
      {"host with userinfo", "GET / HTTP/1.1\r\nhost: u@evil.example\r\n\r\n", 400},
      {"host with a space", "GET / HTTP/1.1\r\nhost: a b\r\n\r\n", 400},
      {"authority-form", "GET evil.example:80 HTTP/1.1\r\n" + h + "\r\n", 400},
      {"asterisk with GET", "GET * HTTP/1.1\r\n" + h + "\r\n", 400},
      {"no leading slash", "GET x/y HTTP/1.1\r\n" + h + "\r\n", 400},
      {"fragment", "GET /a#frag HTTP/1.1\r\n" + h + "\r\n", 400},
      {"space in target", "GET /a b HTTP/1.1\r\n" + h + "\r\n", 400},
      {"control byte in target", "GET /a\x01" "b HTTP/1.1\r\n" + h + "\r\n", 400},
      // Methods: one llhttp does not know is well-formed, and not implemented (RFC 9110 9.1);
      // bytes that are no method at all are malformed.
      {"unknown method", "FOO / HTTP/1.1\r\n" + h + "\r\n", 501},
      {"lower-case method", "get / HTTP/1.1\r\n" + h + "\r\n", 501},
      {"control byte in method", "G\x01T / HTTP/1.1\r\n" + h + "\r\n", 400},
      {"TLS handshake on a plain port", std::string("\x16\x03\x01\x00\x05hello", 10), 400},
  };
}

// An empty header value is well-formed (field-value may be empty, RFC 9110 5.5); llhttp reports
// it as an empty piece at the start of the next line, which must not look like line folding.
TEST_F(HardeningTest, EmptyHeaderValuesAreForwarded) {
  start();
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"empty with space, then another header", "x-empty: \r\nx-b: 1\r\nhost: x\r\n"},
      {"empty without space, first line", "x-empty:\r\nhost: x\r\nx-b: 1\r\n"},
      {"empty, last line", "host: x\r\nx-b: 1\r\nx-empty:\r\n"},
      {"empty with tabs", "host: x\r\nx-empty:\t \t\r\nx-b: 1\r\n"},
  };
  for (const auto& [name, lines] : cases) {
    SCOPED_TRACE(name);
    HttpClient client = remora_.client(Duration(5000));
    ASSERT_TRUE(client.sendRaw("GET /empty HTTP/1.1\r\n" + lines + "\r\n"));
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, 200) << r.body;
    auto echo = parseJson(r.body);
    ASSERT_FALSE(echo.is_discarded()) << r.body;
    EXPECT_EQ(echo["headers"].value("x-empty", "missing"), "") << echo["header_list"].dump();
    EXPECT_EQ(echo["headers"].value("x-b", ""), "1") << echo["header_list"].dump();
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST_F(HardeningTest, SmugglingVariantsAreRefusedAndNeverReachTheUpstream) {
  start();
  for (const BadRequest& c : badRequests()) {
    SCOPED_TRACE(c.name);
    const double connections_before =
        metric("remora_upstream_connections_total", {{"cluster", "main"}});
    HttpClient client = remora_.client(Duration(5000));
    ASSERT_TRUE(client.sendRaw(c.bytes));
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_FALSE(r.keep_alive) << "a refused request must end the connection";
    EXPECT_TRUE(client.waitServerClosed(Duration(3000))) << "connection left open";
    if (!c.body_error) {
      EXPECT_EQ(metric("remora_upstream_connections_total", {{"cluster", "main"}}),
                connections_before)
          << "the proxy opened an upstream connection for a request it refused";
    }
  }
  // Nothing reached the application, and nothing is still on its way there.
  EXPECT_EQ(upstreamStats().requests, 0u) << "a refused request reached the application";
  EXPECT_TRUE(waitFor([&] { return upstreamStats().active == 0; }))
      << "an aborted upstream request is still being served";
  // A well-formed request still works on a fresh connection.
  HttpClient ok = remora_.client();
  Response r = ok.get("/fine");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
}

// A client configured to use Remora as its HTTP proxy (HTTP_PROXY) sends absolute-form targets,
// which a server must accept (RFC 9112 3.2.2): the upstream gets origin-form, and the URI's
// authority as its one Host, whatever Host the client sent. Routes match the path.
TEST_F(HardeningTest, AbsoluteFormIsForwardedInOriginForm) {
  start();
  HttpClient client = remora_.client(Duration(5000));
  ASSERT_TRUE(client.sendRaw("GET http://orders.internal:8080/abs?x=1 HTTP/1.1\r\n"
                             "host: somewhere-else\r\nx-a: 1\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200) << r.body;
  auto echo = parseJson(r.body);
  ASSERT_FALSE(echo.is_discarded()) << r.body;
  EXPECT_EQ(echo.value("url", ""), "/abs?x=1");
  EXPECT_EQ(echo["headers"].value("host", ""), "orders.internal:8080") << echo["header_list"].dump();
  EXPECT_EQ(echo["headers"].value("x-a", ""), "1");
  int hosts = 0;
  for (const auto& line : echo["header_list"]) hosts += line[0] == "host" ? 1 : 0;
  EXPECT_EQ(hosts, 1) << echo["header_list"].dump();
  EXPECT_TRUE(r.keep_alive);

  // Without a path, and in upper case: "/" and no Host needed from the client.
  ASSERT_TRUE(client.sendRaw("GET HTTP://orders HTTP/1.1\r\n\r\n"));
  r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 200) << r.body;
  echo = parseJson(r.body);
  EXPECT_EQ(echo.value("url", ""), "/");
  EXPECT_EQ(echo["headers"].value("host", ""), "orders");
}

TEST_F(HardeningTest, OptionsAsteriskIsNotTreatedAsMalformed) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw("OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  // No route matches "*" (routes match paths), so 404 rather than 400.
  EXPECT_EQ(r.status, 404) << r.body;
}

// --- Size limits. ---

TEST_F(HardeningTest, RequestTargetOverTheLimitGets414) {
  start({{"MAX_HEADERS_KB", "4"}});
  HttpClient client = remora_.client();
  // Built whole, not "/" + string: GCC 12 warns falsely on that (-Wrestrict).
  Response ok = client.get(std::string(3000, 'a').insert(0, 1, '/'));
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
  Response big = client.get(std::string(5000, 'a').insert(0, 1, '/'));
  ASSERT_TRUE(big.ok()) << big.error;
  EXPECT_EQ(big.status, 414) << big.body;
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(upstreamStats().requests, 1u);
}

TEST_F(HardeningTest, MoreThanAHundredHeaderLinesGet431) {
  start();
  Headers hundred;  // with host: 100 header lines, the limit
  for (int i = 0; i < 99; ++i) hundred.add("x-h" + std::to_string(i), "v");
  HttpClient client = remora_.client();
  Response ok = client.get("/ok", hundred);
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
  Headers more = hundred;
  more.add("x-one-too-many", "v");
  Response r = client.get("/many", more);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 431) << r.body;
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(upstreamStats().requests, 1u);
}

// --- Clients that stall. ---

TEST_F(HardeningTest, StalledRequestBodyGets408AfterIdleTimeout) {
  // The route timeout is far away: only the listener's idle_timeout can end this.
  start({{"IDLE_TIMEOUT", "500ms"}, {"ROUTE_TIMEOUT", "30s"}});
  HttpClient client = remora_.client(Duration(10000));
  const auto start = Clock::now();
  ASSERT_TRUE(client.sendRaw("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
                             "only the first bytes"));
  Response r = client.readResponse();
  const auto elapsed = Clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 408) << r.body;
  EXPECT_GE(elapsed, Duration(400));
  EXPECT_LT(elapsed, Duration(5000));
  EXPECT_TRUE(client.waitServerClosed());
  // The upstream request the body was streaming into is given up too.
  EXPECT_TRUE(waitFor([&] { return upstreamStats().open_connections <= 1; }, Duration(3000)))
      << "upstream connection of the abandoned request still open";
}

TEST_F(HardeningTest, SlowButSteadyBodyIsNotCutByIdleTimeout) {
  start({{"IDLE_TIMEOUT", "500ms"}, {"ROUTE_TIMEOUT", "30s"}});
  HttpClient client = remora_.client(Duration(10000));
  ASSERT_TRUE(client.sendRaw("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 16\r\n\r\n"));
  // 15 bytes, one every 150 ms: over 2 s in all, never 500 ms without progress; then the last.
  EXPECT_FALSE(client.dribble(std::string(15, 'b'), Duration(150)))
      << "the proxy answered or closed mid-body";
  ASSERT_TRUE(client.sendRaw("b"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-length"), "16");
}

TEST_F(HardeningTest, ClientThatNeverReadsIsClosedAfterIdleTimeoutWithBoundedMemory) {
  // No route timeout: before the fix nothing ever closed such a connection.
  start({{"IDLE_TIMEOUT", "1s"}, {"ROUTE_TIMEOUT", "0s"}});
  const pid_t pid = remora_.process()->pid();
  {
    // Warm up (threads, pools, allocator arenas) so the baseline is the steady state.
    HttpClient warm = remora_.client();
    for (int i = 0; i < 20; ++i) ASSERT_EQ(warm.get("/", {{"x-fake-body-size", "100000"}}).status, 200);
  }
  const uint64_t rss_before = rssKib(pid);
  // The warm-up left a pooled upstream connection in the worker that served it; the stuck
  // clients may all land on the other worker and never reuse it.
  const auto upstream_open_before = upstreamStats().open_connections;
  constexpr int kClients = 4;
  constexpr size_t kBodyBytes = 64u << 20;  // per client, never read
  std::vector<int> fds;
  const auto start = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    int fd = connectTo(remora_.listenPort(), 4096);
    ASSERT_GE(fd, 0);
    const std::string req = "GET /big HTTP/1.1\r\nhost: x\r\nx-fake-body-size: " +
                            std::to_string(kBodyBytes) + "\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    fds.push_back(fd);
  }
  // The proxy has taken the connections (a gauge still at 0 would pass the wait below at once).
  uint64_t rss_peak = rss_before;
  ASSERT_TRUE(waitFor(
      [&] {
        rss_peak = std::max(rss_peak, rssKib(pid));
        return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) ==
               kClients;
      },
      Duration(5000), Duration(10)))
      << "the proxy did not take the " << kClients << " connections";
  // Peak RSS while the responses are stuck, sampled until the proxy gives up on the clients.
  const bool closed = waitFor(
      [&] {
        rss_peak = std::max(rss_peak, rssKib(pid));
        return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == 0;
      },
      Duration(15000), Duration(50));
  const auto elapsed = Clock::now() - start;
  EXPECT_TRUE(closed) << "connections of clients that never read are still open";
  EXPECT_GE(elapsed, Duration(900)) << "closed before idle_timeout";
  EXPECT_LT(elapsed, Duration(10000));
  const double growth_mib = static_cast<double>(rss_peak - std::min(rss_peak, rss_before)) / 1024;
  std::cout << "[ measure  ] RSS " << rss_before / 1024.0 << " MiB before, peak "
            << rss_peak / 1024.0 << " MiB with " << kClients << " clients not reading "
            << (kBodyBytes >> 20) << " MiB each (growth " << growth_mib << " MiB)\n";
  // What the proxy holds per stuck client is its flow-control watermark (256 KiB) plus what
  // sanitizer builds keep in quarantine, not the response.
  EXPECT_LT(growth_mib, 48.0) << "the proxy buffers the responses it cannot deliver";
  // The upstream side of each stuck response was given up as well.
  EXPECT_TRUE(waitFor(
      [&] { return upstreamStats().open_connections <= upstream_open_before; }, Duration(5000)))
      << "upstream connections open: " << upstreamStats().open_connections << ", before the "
      << kClients << " clients: " << upstream_open_before;
  for (int fd : fds) ::close(fd);
}

// --- Many idle connections. ---

TEST_F(HardeningTest, TenThousandIdleConnectionsAreHeldAndAFreshRequestIsStillFast) {
  constexpr int kIdle = 10000;
  rlimit own{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
  if (own.rlim_max != RLIM_INFINITY && own.rlim_max < static_cast<rlim_t>(kIdle) + 512) {
    GTEST_SKIP() << "hard RLIMIT_NOFILE is " << own.rlim_max << "; this test needs "
                 << kIdle + 512 << " descriptors (raise it with ulimit -Hn)";
  }
  // Start the proxy with the common default soft limit of 1024, so that holding the connections
  // depends on remora raising its own soft limit to the hard one at startup.
  rlimit low = own;
  low.rlim_cur = std::min<rlim_t>(1024, own.rlim_max);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  ASSERT_TRUE(up_.start());
  ::testing::AssertionResult started = remora_.start(
      kConfig, {{"UP", up_.address()}, {"IDLE_TIMEOUT", "120s"}, {"MAX_HEADERS_KB", "8"},
                {"MAX_CONNECTIONS", ""}, {"ROUTE_TIMEOUT", "15s"}});
  rlimit high = own;
  high.rlim_cur = own.rlim_max == RLIM_INFINITY ? static_cast<rlim_t>(kIdle) * 2 : own.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &high), 0);
  ASSERT_TRUE(started);

  const pid_t pid = remora_.process()->pid();
  const auto [soft, hard] = openFileLimits(pid);
  EXPECT_EQ(soft, hard) << "remora did not raise its soft RLIMIT_NOFILE to the hard limit";
  EXPECT_GE(soft, static_cast<uint64_t>(kIdle));

  {
    HttpClient warm = remora_.client();
    for (int i = 0; i < 20; ++i) ASSERT_EQ(warm.get("/").status, 200);
  }
  ASSERT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == 0;
  }));
  const uint64_t rss_before = rssKib(pid);

  std::vector<int> fds;
  fds.reserve(kIdle);
  const auto open_start = Clock::now();
  for (int i = 0; i < kIdle; ++i) {
    int fd = connectTo(remora_.listenPort());
    ASSERT_GE(fd, 0) << "connect " << i << " failed: " << std::strerror(errno);
    fds.push_back(fd);
    // Do not outrun the accept queue (4096): a full queue drops SYNs and connects stall for a
    // second each.
    if (i % 1000 == 999) {
      ASSERT_TRUE(waitFor([&] {
        return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) >=
               i + 1 - 2000;
      }, Duration(20000))) << "the proxy stopped accepting at about " << i << " connections";
    }
  }
  ASSERT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == kIdle;
  }, Duration(30000))) << "active connections: "
                       << metric("remora_downstream_connections_active", {{"listener", "ingress"}});
  const auto open_time = Clock::now() - open_start;
  const uint64_t rss_after = rssKib(pid);
  const double per_conn_kib =
      static_cast<double>(rss_after - std::min(rss_after, rss_before)) / kIdle;
  std::cout << "[ measure  ] " << kIdle << " idle connections opened in "
            << std::chrono::duration_cast<Duration>(open_time).count() << " ms; remora RSS "
            << rss_before / 1024.0 << " -> " << rss_after / 1024.0 << " MiB, "
            << per_conn_kib << " KiB per idle connection; open-file limit " << soft << "\n";
  RecordProperty("rss_kib_per_idle_connection", std::to_string(per_conn_kib));
  EXPECT_LT(per_conn_kib, 32.0) << "idle connections cost more memory than expected";

  // A fresh request is still answered quickly while all of them are held.
  HttpClient fresh = remora_.client();
  Response r = fresh.get("/fresh");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(r.elapsed, Duration(1000)) << "a request took " << r.elapsed.count() << " ms";

  fresh.close();
  for (int fd : fds) ::close(fd);
  EXPECT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == 0;
  }, Duration(30000)));
}

// --- The listener's max_connections cap. ---

TEST_F(HardeningTest, MaxConnectionsClosesConnectionsOverTheCapAndCountsThem) {
  start({{"MAX_CONNECTIONS", "max_connections: 3"}});
  EXPECT_EQ(metric("remora_downstream_connections_rejected_total", {{"listener", "ingress"}}), 0);
  std::vector<std::unique_ptr<HttpClient>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<HttpClient>(remora_.listenPort()));
    Response r = held.back()->get("/held");
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, 200);
  }
  ASSERT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == 3;
  }));

  HttpClient over = remora_.client(Duration(3000));
  ASSERT_TRUE(over.connect());
  EXPECT_TRUE(over.waitServerClosed(Duration(3000))) << "a connection over the cap was kept";
  EXPECT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_rejected_total", {{"listener", "ingress"}}) == 1;
  }));
  EXPECT_EQ(metric("remora_downstream_connections_active", {{"listener", "ingress"}}), 3);

  // The connections inside the cap are unaffected, and a slot that frees up can be used.
  Response again = held[0]->get("/still-here");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(held[0]->connectionsOpened(), 1);
  held.pop_back();
  ASSERT_TRUE(waitFor([&] {
    return metric("remora_downstream_connections_active", {{"listener", "ingress"}}) == 2;
  }));
  HttpClient next = remora_.client();
  Response r = next.get("/next");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(metric("remora_downstream_connections_rejected_total", {{"listener", "ingress"}}), 1);
}

TEST_F(HardeningTest, MaxConnectionsMustBePositive) {
  ValidateResult r = RemoraProcess::validate(tmp_, "zero.yaml", R"(listeners:
  - name: ingress
    address: 127.0.0.1:15001
    max_connections: 0
    routes: [ { match: { prefix: / }, cluster: main } ]
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)");
  EXPECT_EQ(r.exit_code, std::optional<int>(1)) << r.output;
  EXPECT_NE(r.output.find("zero.yaml:4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("max_connections"), std::string::npos) << r.output;
}

// --- The admin API stays on loopback unless told otherwise. ---

TEST_F(HardeningTest, AdminApiDefaultsToLoopback) {
  // No `admin:` key at all. The default port 9901 may be in use on a shared machine; then the
  // proxy refuses to start, and its message names the address it tried.
  const uint16_t listen = freePort();
  const auto path = tmp_.writeFile("no-admin.yaml", R"(listeners:
  - name: ingress
    address: 127.0.0.1:)" + std::to_string(listen) + R"(
    routes: [ { match: { prefix: / }, cluster: main } ]
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)");
  Process remora("remora-no-admin", remoraBinary(), {"--config", path.string()},
                 tmp_ / "remora-no-admin.log");
  ASSERT_TRUE(remora.start());
  const std::string kLine = "admin API on http://127.0.0.1:9901 ";
  const std::string kRefused = "cannot listen on admin address 127.0.0.1:9901";
  ASSERT_TRUE(waitFor([&] {
    const std::string log = remora.log();
    return log.find(kLine) != std::string::npos || log.find(kRefused) != std::string::npos;
  }, Duration(10000))) << remora.logTail();
  if (remora.log().find(kRefused) != std::string::npos) {
    EXPECT_EQ(remora.waitExit(Duration(5000)), std::optional<int>(1));
    std::cout << "[ note     ] 127.0.0.1:9901 is taken on this machine; checked the address "
                 "the proxy tried instead of querying it\n";
    return;
  }
  HttpClient admin(9901);
  Response cfg = admin.get("/config");
  ASSERT_TRUE(cfg.ok()) << cfg.error;
  auto j = nlohmann::json::parse(cfg.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << cfg.body;
  EXPECT_EQ(j["config"]["admin"]["address"], "127.0.0.1:9901");
  // And it is not reachable on any other address of this machine.
  ifaddrs* ifs = nullptr;
  ASSERT_EQ(::getifaddrs(&ifs), 0);
  int checked = 0;
  for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    sockaddr_in a = *reinterpret_cast<sockaddr_in*>(i->ifa_addr);
    if ((ntohl(a.sin_addr.s_addr) >> 24) == 127) continue;
    a.sin_port = htons(9901);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
        << "admin API reachable on " << inet_ntoa(a.sin_addr);
    ::close(fd);
    ++checked;
  }
  ::freeifaddrs(ifs);
  std::cout << "[ note     ] admin API not reachable on " << checked
            << " non-loopback IPv4 address(es)\n";
  EXPECT_TRUE(remora.signal(SIGTERM));
  EXPECT_EQ(remora.waitExit(Duration(10000)), std::optional<int>(0));
}

// --- Regressions for what the fuzzers found (tests/fuzz). ---

// A scripted upstream on a thread: answers every request head it reads with `response`, keeps
// the connection open, counts requests. For answers fake-upstream never gives.
class CannedUpstream {
 public:
  explicit CannedUpstream(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~CannedUpstream() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }
  int connections() const { return connections_.load(); }

 private:
  void run() {
    struct Conn {
      int fd;
      std::string buf;
    };
    std::vector<Conn> conns;
    while (!stop_) {
      std::vector<pollfd> p{{fd_, POLLIN, 0}};
      for (const Conn& c : conns) p.push_back({c.fd, POLLIN, 0});
      if (::poll(p.data(), p.size(), 50) <= 0) continue;
      for (size_t i = 1; i < p.size(); ++i) {
        if (p[i].revents == 0) continue;
        Conn& c = conns[i - 1];
        char b[4096];
        ssize_t n = ::recv(c.fd, b, sizeof(b), 0);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        c.buf.append(b, static_cast<size_t>(n));
        for (size_t end; (end = c.buf.find("\r\n\r\n")) != std::string::npos;) {
          c.buf.erase(0, end + 4);
          ++requests_;
          ::send(c.fd, response_.data(), response_.size(), MSG_NOSIGNAL);
        }
      }
      std::erase_if(conns, [](const Conn& c) { return c.fd < 0; });
      if (p[0].revents != 0) {
        int fd = ::accept(fd_, nullptr, nullptr);
        if (fd < 0) break;
        conns.push_back({fd, {}});
        ++connections_;
      }
    }
    for (const Conn& c : conns) ::close(c.fd);
  }

  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
};

// Reads one response head (up to the blank line) from a blocking socket; "" on timeout or EOF.
std::string readHead(int fd, Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string head;
  while (head.find("\r\n\r\n") == std::string::npos) {
    const auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    char c;
    if (::recv(fd, &c, 1, 0) != 1) return "";
    head.push_back(c);
  }
  return head;
}

TEST_F(HardeningTest, NotModifiedWithContentLengthIsForwardedAtOnceAndKeepsTheConnection) {
  // RFC 9110 8.6: a 304 may carry the Content-Length of the representation; it has no body. The
  // proxy used to wait for that body until the route timeout, then close both connections.
  // (Read with a raw socket: the harness client has the same 304 misreading.)
  CannedUpstream up("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 1234\r\n\r\n");
  ASSERT_TRUE(remora_.start(kConfig, {{"UP", up.address()}, {"IDLE_TIMEOUT", "60s"},
                                      {"MAX_HEADERS_KB", "8"}, {"MAX_CONNECTIONS", ""},
                                      {"ROUTE_TIMEOUT", "5s"}}));
  int fd = connectTo(remora_.listenPort());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("request " + std::to_string(i + 1));
    const std::string req = "GET /cached HTTP/1.1\r\nhost: x\r\nif-none-match: \"v1\"\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    const auto start = Clock::now();
    const std::string head = readHead(fd, Duration(3000));
    ASSERT_FALSE(head.empty()) << "no response head within 3 s (the route timeout is 5 s)";
    EXPECT_EQ(head.rfind("HTTP/1.1 304 ", 0), 0u) << head;
    EXPECT_NE(head.find("etag: \"v1\""), std::string::npos) << head;
    EXPECT_EQ(head.find("connection: close"), std::string::npos) << head;
    EXPECT_LT(Clock::now() - start, Duration(2000));
  }
  // Nothing follows the heads (no body), and both connections were kept alive.
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0) << "bytes (or a close) after a 304 head";
  ::close(fd);
  EXPECT_EQ(up.requests(), 3);
  EXPECT_EQ(up.connections(), 1) << "the upstream connection was not reused";
}

TEST_F(HardeningTest, ResponseBeforeTheRequestBodyEndsSaysConnectionClose) {
  // The upstream refuses a large upload at its head. The proxy closes the client connection after
  // that response (the rest of the body cannot be told from a next request), and its head must
  // say so: without "connection: close" a client pools the connection and loses its next request.
  CannedUpstream up("HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!");
  ASSERT_TRUE(remora_.start(kConfig, {{"UP", up.address()}, {"IDLE_TIMEOUT", "60s"},
                                      {"MAX_HEADERS_KB", "8"}, {"MAX_CONNECTIONS", ""},
                                      {"ROUTE_TIMEOUT", "5s"}}));
  int fd = connectTo(remora_.listenPort());
  ASSERT_GE(fd, 0);
  const std::string req = "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n" +
                          std::string(1000, 'x');
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  const std::string head = readHead(fd, Duration(3000));
  ASSERT_FALSE(head.empty()) << "no response head within 3 s";
  EXPECT_EQ(head.rfind("HTTP/1.1 413 ", 0), 0u) << head;
  EXPECT_NE(head.find("connection: close"), std::string::npos) << head;
  // The body, then the close.
  std::string rest;
  const auto deadline = Clock::now() + Duration(3000);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now()).count();
    ASSERT_GT(left, 0) << "the connection was left open after a connection: close response";
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char b[256];
    ssize_t n = ::recv(fd, b, sizeof(b), 0);
    if (n <= 0) break;
    rest.append(b, static_cast<size_t>(n));
  }
  EXPECT_EQ(rest, "big!");
  ::close(fd);
}

TEST_F(HardeningTest, FallbackClusterTryAfterRouteTimeoutIsBoundedToo) {
  // Both clusters hang. The route timeout sends the request to the fallback cluster, whose try
  // used to have no timeout at all: the client waited forever.
  start({{"ROUTE_TIMEOUT", "400ms"}});
  HttpClient client = remora_.client(Duration(10000));
  Response r = client.get("/fb/slow", {{"x-fake-hang", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.header("x-remora-fallback"), "timeout");
  EXPECT_LT(r.elapsed, Duration(3000));
  EXPECT_TRUE(waitFor([&] { return upstreamStats().active == 0; }, Duration(3000)))
      << "a hung upstream request was never given up";
}

TEST_F(HardeningTest, GaugesReturnToZeroAfterMidResponseFailuresAndSharedEndpoints) {
  // Two clusters share one endpoint (main and its fallback, spare). Connection gauges used to be
  // decremented on whichever cluster used the pool last (going negative), and a stream ended by
  // an upstream reset mid-response never left remora_upstream_requests_active.
  start({{"ROUTE_TIMEOUT", "2s"}});
  HttpClient broken = remora_.client();
  Response cut = broken.get("/x", {{"x-fake-reset", "mid-body"}, {"x-fake-body-size", "200000"}});
  EXPECT_FALSE(cut.ok() && cut.status == 200);
  HttpClient client = remora_.client();
  // A pooled connection, opened for main...
  Response ok = client.get("/x");
  ASSERT_TRUE(ok.ok()) << ok.error;
  // ...taken by main again, which gets a 503 and drops it while the fallback cluster, spare,
  // tries on a new connection from the same pool (and gets the same 503).
  Response fb = client.get("/fb/x", {{"x-fake-status", "503"}});
  ASSERT_TRUE(fb.ok()) << fb.error;
  EXPECT_EQ(fb.header("x-remora-fallback"), "retries-exhausted");
  EXPECT_EQ(up_.stats().value_or(UpstreamStats{}).connections, 3u) << "expected 3 upstream connections";
  // Let the upstream close every pooled connection.
  ASSERT_TRUE(up_.terminate().has_value());
  for (const char* cluster : {"main", "spare"}) {
    SCOPED_TRACE(cluster);
    EXPECT_TRUE(waitFor([&] {
      return metric("remora_upstream_connections_active", {{"cluster", cluster}}) == 0 &&
             metric("remora_upstream_requests_active", {{"cluster", cluster}}) == 0;
    })) << remora_.stats();
  }
}

TEST_F(HardeningTest, ConfigsTheFuzzerBrokeAreRejectedWithAReason) {
  struct Case {
    const char* name;
    std::string yaml;
    const char* expect;
  };
  const std::string tail = R"(
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: / }
        cluster: main
        fallback: { status: 503, headers: { x-reason: "FALLBACK_HEADER" }, body: "FALLBACK_BODY" }
clusters:
  - name: main
    endpoints: [ { address: 127.0.0.1:8081 } ]
)";
  auto with = [&](std::string header, std::string body) {
    std::string s = tail;
    s.replace(s.find("FALLBACK_HEADER"), 15, header);
    s.replace(s.find("FALLBACK_BODY"), 13, body);
    return s;
  };
  const std::vector<Case> cases = {
      // yaml-cpp's LoadAll() never returned on a stray ',': the proxy hung at startup or reload.
      {"stray comma", ",\n", "unexpected ','"},
      {"stray comma after a map", "{admin: {address: 127.0.0.1:9901}},\n", "unexpected ','"},
      // Accepted, then GET /config threw on the invalid UTF-8 and the proxy died.
      {"invalid UTF-8", with("x", "bad \xff\xfe body"), "must be UTF-8 text"},
      // Written into responses as is: a CR LF split the header block.
      {"CRLF in a fallback header", with("a\\r\\nset-cookie: x=1", "x"),
       "must not contain CR, LF or NUL"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ValidateResult r = RemoraProcess::validate(tmp_, "fuzzed.yaml", c.yaml, Duration(10000));
    ASSERT_TRUE(r.exit_code.has_value()) << "remora --validate did not finish";
    EXPECT_EQ(*r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace remora::itest
