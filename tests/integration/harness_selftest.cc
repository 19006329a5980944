// The integration harness and fake-upstream, tested against each other (no proxy involved):
// every per-request behaviour and control mode of fake-upstream, seen through HttpClient.

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "body_pattern.h"
#include "harness.h"

namespace remora::itest {
namespace {

constexpr size_t kTenMiB = 10u << 20;

class FakeUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(up_.start()); }

  UpstreamStats stats() {
    auto s = up_.stats();
    EXPECT_TRUE(s.has_value()) << "GET /__stats failed";
    return s.value_or(UpstreamStats{});
  }

  TempDir tmp_;
  FakeUpstream up_{tmp_, "self"};
};

TEST_F(FakeUpstreamTest, HealthzAnswersOk) {
  HttpClient client(up_.port());
  Response r = client.get("/healthz");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(r.header("x-upstream-name"), "self");
}

TEST_F(FakeUpstreamTest, EchoesMethodPathHeadersAndEmptyBody) {
  HttpClient client(up_.port());
  Response r = client.get("/some/path?x=1", {{"X-Custom", "v1"}, {"x-custom", "v2"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  auto j = parseJson(r.body);
  ASSERT_FALSE(j.is_discarded()) << r.body;
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/some/path");
  EXPECT_EQ(j["query"], "x=1");
  EXPECT_EQ(j["url"], "/some/path?x=1");
  EXPECT_EQ(j["upstream"], "self");
  EXPECT_EQ(j["headers"]["x-custom"], "v1, v2");
  EXPECT_EQ(j["headers"]["host"], "127.0.0.1:" + std::to_string(up_.port()));
  EXPECT_EQ(j["header_list"].size(), 3u);
  EXPECT_EQ(j["body_length"], 0);
  EXPECT_EQ(j["body_sha256"], sha256Hex(""));
  EXPECT_EQ(r.header("x-body-length"), "0");
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(""));
}

class FakeUpstreamBodyTest : public FakeUpstreamTest,
                             public ::testing::WithParamInterface<size_t> {};

TEST_P(FakeUpstreamBodyTest, PostBodyChecksum) {
  const std::string body = fake::bodyPattern(GetParam()) + "tail";
  HttpClient client(up_.port(), "127.0.0.1", Duration(30000));
  Response r = client.post("/upload", body);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-length"), std::to_string(body.size()));
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(body));
  auto j = parseJson(r.body);
  EXPECT_EQ(j["body_length"], body.size());
  EXPECT_EQ(j["body_sha256"], sha256Hex(body));
}

TEST_P(FakeUpstreamBodyTest, ChunkedPostBodyChecksum) {
  const std::string body = fake::bodyPattern(GetParam());
  HttpClient client(up_.port(), "127.0.0.1", Duration(30000));
  RequestOptions options;
  options.chunked = true;
  options.chunk_size = 7919;  // odd size, so chunk borders fall everywhere
  Response r = client.request("POST", "/upload", {}, body, options);
  ASSERT_TRUE(r.ok()) << r.error;
  auto j = parseJson(r.body);
  EXPECT_EQ(j["headers"]["transfer-encoding"], "chunked");
  EXPECT_EQ(r.header("x-body-length"), std::to_string(body.size()));
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex(body));
}

TEST_P(FakeUpstreamBodyTest, ResponseBodyOfRequestedSize) {
  const size_t n = GetParam();
  HttpClient client(up_.port(), "127.0.0.1", Duration(30000));
  Response r = client.get("/download", {{"x-fake-body-size", std::to_string(n)}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_FALSE(r.chunked);
  EXPECT_EQ(r.header("content-length"), std::to_string(n));
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(r.body, fake::bodyPattern(n));
  EXPECT_EQ(r.header("x-response-sha256"), sha256Hex(r.body));
}

TEST_P(FakeUpstreamBodyTest, ChunkedResponseBody) {
  const size_t n = GetParam();
  HttpClient client(up_.port(), "127.0.0.1", Duration(30000));
  Response r =
      client.get("/download", {{"x-fake-body-size", std::to_string(n)}, {"x-fake-chunked", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.chunked);
  EXPECT_FALSE(r.headers.has("content-length"));
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(r.header("x-response-sha256"), sha256Hex(r.body));
  EXPECT_EQ(sha256Hex(r.body), sha256Hex(fake::bodyPattern(n)));
}

INSTANTIATE_TEST_SUITE_P(Sizes, FakeUpstreamBodyTest,
                         ::testing::Values(size_t{0}, size_t{1024}, kTenMiB),
                         [](const auto& info) { return std::to_string(info.param) + "B"; });

TEST_F(FakeUpstreamTest, ChunkedEchoResponse) {
  HttpClient client(up_.port());
  Response r = client.get("/chunked-echo", {{"x-fake-chunked", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(parseJson(r.body)["path"], "/chunked-echo");
}

TEST_F(FakeUpstreamTest, HeadHasLengthButNoBody) {
  HttpClient client(up_.port());
  Response r = client.request("HEAD", "/x", {{"x-fake-body-size", "5000"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.header("content-length"), "5000");
  EXPECT_TRUE(r.body.empty());
  // The connection stays usable: the next response is framed correctly.
  Response r2 = client.get("/y", {{"x-fake-body-size", "10"}});
  ASSERT_TRUE(r2.ok()) << r2.error;
  EXPECT_EQ(r2.body, fake::bodyPattern(10));
  EXPECT_EQ(client.connectionsOpened(), 1);
}

TEST_F(FakeUpstreamTest, CloseDelimitedResponse) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-no-length", "1"}, {"x-fake-body-size", "3000"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_FALSE(r.headers.has("content-length"));
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(r.body, fake::bodyPattern(3000));
}

TEST_F(FakeUpstreamTest, StatusHeader) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-status", "503"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 503);
  Response r2 = client.get("/x", {{"x-fake-status", "204"}});
  ASSERT_TRUE(r2.ok()) << r2.error;
  EXPECT_EQ(r2.status, 204);
  EXPECT_TRUE(r2.body.empty());
  EXPECT_EQ(client.connectionsOpened(), 1);
}

TEST_F(FakeUpstreamTest, DelayHeader) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-delay-ms", "300"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(r.elapsed.count(), 290);
}

TEST_F(FakeUpstreamTest, HangUntilPeerCloses) {
  HttpClient client(up_.port());
  RequestOptions options;
  options.timeout = Duration(300);
  Response r = client.request("GET", "/x", {{"x-fake-hang", "1"}}, {}, options);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("timeout"), std::string::npos) << r.error;
  EXPECT_EQ(stats().active, 1u);
  client.close();
  EXPECT_TRUE(waitFor([&] { return stats().active == 0; }, Duration(3000)));
}

TEST_F(FakeUpstreamTest, ResetBeforeHeaders) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-reset", "headers"}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
  EXPECT_TRUE(client.waitServerClosed());
}

TEST_F(FakeUpstreamTest, ResetMidBody) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-reset", "mid-body"}, {"x-fake-body-size", "100000"}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status, 200);  // the head made it
  EXPECT_LT(r.body.size(), 100000u);
  EXPECT_FALSE(r.error.empty());
}

TEST_F(FakeUpstreamTest, ResetMidChunkedBody) {
  HttpClient client(up_.port());
  Response r = client.get(
      "/x",
      {{"x-fake-reset", "mid-body"}, {"x-fake-body-size", "100000"}, {"x-fake-chunked", "1"}});
  EXPECT_FALSE(r.ok());
  EXPECT_LT(r.body.size(), 100000u);
}

TEST_F(FakeUpstreamTest, CloseHeaderClosesAfterResponse) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-close", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(client.waitServerClosed());
  ASSERT_TRUE(client.get("/y").ok());
  EXPECT_EQ(client.connectionsOpened(), 2);
}

TEST_F(FakeUpstreamTest, CloseSilentlyKeepsAliveThenCloses) {
  HttpClient client(up_.port());
  Response r = client.get("/x", {{"x-fake-close-silently", "1"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.keep_alive);
  EXPECT_FALSE(r.headers.has("connection"));
  EXPECT_TRUE(client.waitServerClosed());
}

TEST_F(FakeUpstreamTest, StaleConnectionIsDetectedByClient) {
  // Raw use of the connection after a silent close: the request meets a closed socket.
  HttpClient client(up_.port());
  ASSERT_TRUE(client.get("/x", {{"x-fake-close-silently", "1"}}).ok());
  ASSERT_TRUE(client.waitServerClosed());
  client.sendRaw("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
  Response r = client.readResponse();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status, 0);
  // request() checks before reusing, so it reconnects instead.
  Response r2 = client.get("/again");
  ASSERT_TRUE(r2.ok()) << r2.error;
  EXPECT_EQ(client.connectionsOpened(), 2);
}

TEST_F(FakeUpstreamTest, KeepAliveConnectionCounting) {
  ASSERT_TRUE(up_.resetStats());
  HttpClient client(up_.port());
  for (int i = 1; i <= 20; ++i) {
    Response r = client.get("/x");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.header("x-connection-requests"), std::to_string(i));
  }
  EXPECT_EQ(client.connectionsOpened(), 1);
  UpstreamStats s = stats();
  EXPECT_EQ(s.requests, 20u);
  EXPECT_EQ(s.connections, 1u);

  HttpClient other(up_.port());
  ASSERT_TRUE(other.get("/x").ok());
  s = stats();
  EXPECT_EQ(s.requests, 21u);
  EXPECT_EQ(s.connections, 2u);
}

TEST_F(FakeUpstreamTest, StatsExcludeControlPathsAndReset) {
  HttpClient client(up_.port());
  ASSERT_TRUE(client.get("/a").ok());
  ASSERT_TRUE(client.get("/healthz").ok());
  ASSERT_TRUE(client.get("/__stats").ok());
  ASSERT_TRUE(client.get("/__control").ok());
  UpstreamStats s = stats();
  EXPECT_EQ(s.requests, 2u);
  EXPECT_EQ(s.healthz, 1u);
  EXPECT_EQ(s.connections, 1u);
  ASSERT_TRUE(up_.resetStats());
  s = stats();
  EXPECT_EQ(s.requests, 0u);
  EXPECT_EQ(s.connections, 0u);
  // A connection opened before the reset counts again once it carries a request.
  ASSERT_TRUE(client.get("/b").ok());
  s = stats();
  EXPECT_EQ(s.requests, 1u);
  EXPECT_EQ(s.connections, 1u);
}

TEST_F(FakeUpstreamTest, ControlFailRatioIsDeterministic) {
  ASSERT_TRUE(up_.control("fail_ratio=0.5"));
  HttpClient client(up_.port());
  std::vector<int> statuses;
  for (int i = 0; i < 10; ++i) statuses.push_back(client.get("/x").status);
  EXPECT_EQ(statuses, (std::vector<int>{200, 503, 200, 503, 200, 503, 200, 503, 200, 503}));
  ASSERT_TRUE(up_.control("fail_ratio=1&fail_status=500"));
  EXPECT_EQ(client.get("/x").status, 500);
  ASSERT_TRUE(up_.control("clear"));
  EXPECT_EQ(client.get("/x").status, 200);
}

TEST_F(FakeUpstreamTest, ControlStatusAndHeaderOverride) {
  ASSERT_TRUE(up_.control("status=503"));
  HttpClient client(up_.port());
  EXPECT_EQ(client.get("/x").status, 503);
  EXPECT_EQ(client.get("/healthz").status, 503);
  EXPECT_EQ(client.get("/x", {{"x-fake-status", "201"}}).status, 201);
  ASSERT_TRUE(up_.control("reset"));  // bare "reset" clears every mode
  EXPECT_EQ(client.get("/x").status, 200);
  ASSERT_TRUE(up_.control("healthz_status=500"));
  EXPECT_EQ(client.get("/healthz").status, 500);
  EXPECT_EQ(client.get("/x").status, 200);
}

TEST_F(FakeUpstreamTest, ControlDelay) {
  ASSERT_TRUE(up_.control("delay_ms=250"));
  HttpClient client(up_.port());
  Response r = client.get("/x");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_GE(r.elapsed.count(), 240);
}

TEST_F(FakeUpstreamTest, ControlResetAndHang) {
  ASSERT_TRUE(up_.control("reset=headers"));
  HttpClient client(up_.port());
  EXPECT_EQ(client.get("/x").status, 0);
  ASSERT_TRUE(up_.control("reset=none hang=1"));
  RequestOptions options;
  options.timeout = Duration(200);
  Response r = client.request("GET", "/x", {}, {}, options);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("timeout"), std::string::npos) << r.error;
  client.close();
  ASSERT_TRUE(up_.control("clear"));
  EXPECT_EQ(client.get("/x").status, 200);
}

TEST_F(FakeUpstreamTest, ControlCloseModes) {
  HttpClient client(up_.port());
  ASSERT_TRUE(up_.control("close=1"));
  Response r = client.get("/x");
  EXPECT_EQ(r.header("connection"), "close");
  ASSERT_TRUE(up_.control("close=0 close_silently=1"));
  r = client.get("/x");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_TRUE(client.waitServerClosed());
}

TEST_F(FakeUpstreamTest, ControlRejectsUnknownKeys) {
  HttpClient client(up_.port());
  Response r = client.post("/__control", "fail_ratio=2");
  EXPECT_EQ(r.status, 400);
  r = client.post("/__control", "status=503 bogus=1");
  EXPECT_EQ(r.status, 400);
  // All or nothing: status=503 was not applied.
  EXPECT_EQ(client.get("/x").status, 200);
  EXPECT_EQ(client.get("/__nope").status, 404);
}

TEST_F(FakeUpstreamTest, GarbageGets400AndServerSurvives) {
  HttpClient raw(up_.port());
  ASSERT_TRUE(raw.sendRaw("this is not http\r\n\r\n"));
  Response r = raw.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(raw.waitServerClosed());

  HttpClient binary(up_.port());
  ASSERT_TRUE(binary.sendRaw(std::string("\x00\xff\x16\x03\x01\r\n\r\n", 9)));
  EXPECT_EQ(binary.readResponse().status, 400);

  HttpClient client(up_.port());
  EXPECT_EQ(client.get("/healthz").status, 200);
}

TEST_F(FakeUpstreamTest, Expect100Continue) {
  HttpClient client(up_.port());
  ASSERT_TRUE(client.sendRaw(
      "POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"));
  // The server answers the headers alone with "100 Continue" (readResponse skips it later).
  ASSERT_TRUE(client.waitReadable(Duration(2000)));
  ASSERT_TRUE(client.sendRaw("hello"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-sha256"), sha256Hex("hello"));
}

TEST_F(FakeUpstreamTest, SigtermExitsZeroWithOpenConnections) {
  HttpClient idle(up_.port());
  ASSERT_TRUE(idle.get("/x").ok());
  HttpClient hanging(up_.port());
  ASSERT_TRUE(hanging.sendRaw("GET /h HTTP/1.1\r\nhost: x\r\nx-fake-hang: 1\r\n\r\n"));
  ASSERT_TRUE(waitFor([&] { return stats().active == 1; }));
  EXPECT_EQ(up_.terminate(), std::optional<int>(0));
  EXPECT_TRUE(hanging.waitServerClosed());
}

TEST_F(FakeUpstreamTest, Kill9AndRestartOnSamePort) {
  const uint16_t port = up_.port();
  up_.kill9();
  HttpClient client(port, "127.0.0.1", Duration(1000));
  Response r = client.get("/x");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("connect"), std::string::npos) << r.error;
  ASSERT_TRUE(up_.restart());
  EXPECT_EQ(up_.port(), port);
  EXPECT_EQ(client.get("/x").status, 200);
}

TEST_F(FakeUpstreamTest, LoadHelperCountsStatusesAndFailures) {
  ASSERT_TRUE(up_.resetStats());
  LoadOptions options;
  options.port = up_.port();
  options.threads = 4;
  options.requests_per_thread = 25;
  LoadResult result = runLoad(options);
  EXPECT_TRUE(result.allStatus(200)) << result.summary();
  EXPECT_EQ(result.total, 100u);
  EXPECT_EQ(result.by_header["self"], 100u);
  UpstreamStats s = stats();
  EXPECT_EQ(s.requests, 100u);
  EXPECT_LE(s.connections, 4u);  // keep-alive: one connection per thread

  ASSERT_TRUE(up_.control("fail_ratio=0.5"));
  options.threads = 2;
  options.requests_per_thread = 10;
  result = runLoad(options);
  EXPECT_EQ(result.count(200), 10u) << result.summary();
  EXPECT_EQ(result.count(503), 10u) << result.summary();
  EXPECT_EQ(result.failures, 0u);

  // Connection errors are failures.
  ASSERT_TRUE(up_.control("clear reset=headers"));
  result = runLoad(options);
  EXPECT_EQ(result.failures, 20u) << result.summary();
  EXPECT_FALSE(result.errors.empty());

  // So are failed checks.
  ASSERT_TRUE(up_.control("clear"));
  options.check = [](const Response& r) { return r.status == 201; };
  result = runLoad(options);
  EXPECT_EQ(result.failures, 20u) << result.summary();
}

TEST_F(FakeUpstreamTest, BackgroundLoadRunsUntilStopped) {
  LoadOptions options;
  options.port = up_.port();
  options.threads = 2;
  BackgroundLoad load(options);
  ASSERT_TRUE(waitFor([&] { return load.completed() >= 50; }));
  LoadResult result = load.stop();
  EXPECT_GE(result.total, 50u);
  EXPECT_TRUE(result.allStatus(200)) << result.summary();
  EXPECT_GE(stats().requests, result.total);
}

TEST(FakeUpstreamCli, PrintsListeningLineAndRejectsBadArguments) {
  TempDir tmp;
  Process bad("fake-upstream bad", fakeUpstreamBinary(), {"--bogus"}, tmp / "bad.log");
  ASSERT_TRUE(bad.start());
  EXPECT_EQ(bad.waitExit(Duration(5000)), std::optional<int>(2));
  EXPECT_NE(bad.log().find("unknown argument"), std::string::npos) << bad.log();

  const uint16_t port = freePort();
  Process fixed("fake-upstream fixed", fakeUpstreamBinary(),
                {"--port", std::to_string(port), "--name", "fixed", "--quiet"}, tmp / "fixed.log");
  ASSERT_TRUE(fixed.start());
  const std::string expected = "listening on 127.0.0.1:" + std::to_string(port) + "\n";
  ASSERT_TRUE(waitFor([&] { return fixed.log() == expected; })) << fixed.log();

  // The same port again: a clear error, exit 1.
  Process clash("fake-upstream clash", fakeUpstreamBinary(), {"--port", std::to_string(port)},
                tmp / "clash.log");
  ASSERT_TRUE(clash.start());
  EXPECT_EQ(clash.waitExit(Duration(5000)), std::optional<int>(1));
  EXPECT_NE(clash.log().find("Address already in use"), std::string::npos) << clash.log();

  EXPECT_TRUE(fixed.signal(SIGTERM));
  EXPECT_EQ(fixed.waitExit(Duration(5000)), std::optional<int>(0));
}

// --- Harness pieces that need no server. ---

TEST(Harness, ProcessExitCodesSignalsAndLogs) {
  TempDir tmp;
  Process p("sh", "/bin/sh", {"-c", "echo out; echo err >&2; exit 3"}, tmp / "sh.log");
  ASSERT_TRUE(p.start());
  EXPECT_EQ(p.waitExit(Duration(5000)), std::optional<int>(3));
  EXPECT_NE(p.log().find("out\n"), std::string::npos);
  EXPECT_NE(p.log().find("err\n"), std::string::npos);
  EXPECT_FALSE(p.running());

  Process sleeper("sleep", "/bin/sleep", {"30"}, tmp / "sleep.log");
  ASSERT_TRUE(sleeper.start());
  EXPECT_TRUE(sleeper.running());
  EXPECT_FALSE(sleeper.waitExit(Duration(50)).has_value());
  EXPECT_TRUE(sleeper.signal(SIGTERM));
  EXPECT_EQ(sleeper.waitExit(Duration(5000)), std::optional<int>(128 + SIGTERM));

  Process env("env", "/bin/sh", {"-c", "echo \"v=$ITEST_VAR\""}, tmp / "env.log",
              {{"ITEST_VAR", "42"}});
  ASSERT_TRUE(env.start());
  EXPECT_EQ(env.waitExit(Duration(5000)), std::optional<int>(0));
  EXPECT_EQ(env.log(), "v=42\n");

  Process missing("missing", "/nonexistent/binary", {}, tmp / "missing.log");
  std::string error;
  EXPECT_FALSE(missing.start(&error));
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
}

TEST(Harness, ProcessDestructorKillsTheChild) {
  TempDir tmp;
  pid_t pid = -1;
  {
    Process sleeper("sleep", "/bin/sleep", {"30"}, tmp / "sleep.log");
    ASSERT_TRUE(sleeper.start());
    pid = sleeper.pid();
  }
  // Reaped by the destructor: the pid is gone (kill(pid, 0) fails with ESRCH).
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(Harness, FreePortsAreDistinctAndBindable) {
  uint16_t a = freePort();
  uint16_t b = freePort();
  EXPECT_NE(a, 0);
  EXPECT_NE(b, 0);
  EXPECT_NE(a, b);
}

TEST(Harness, WaitForHonoursItsDeadline) {
  int calls = 0;
  auto start = Clock::now();
  EXPECT_FALSE(waitFor([&] { return ++calls < 0; }, Duration(100)));
  EXPECT_GE(Clock::now() - start, Duration(100));
  EXPECT_GT(calls, 1);
  EXPECT_TRUE(waitFor([] { return true; }, Duration(0)));
}

TEST(Harness, Sha256Hex) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Harness, HeadersAreCaseInsensitive) {
  Headers h{{"Content-Type", "a"}, {"x-dup", "1"}, {"X-Dup", "2"}};
  EXPECT_EQ(h.value("content-type"), "a");
  EXPECT_EQ(h.count("X-DUP"), 2u);
  EXPECT_EQ(h.all("x-dup"), (std::vector<std::string>{"1", "2"}));
  EXPECT_FALSE(h.get("missing").has_value());
  h.set("X-DUP", "3");
  EXPECT_EQ(h.all("x-dup"), (std::vector<std::string>{"3"}));
  EXPECT_EQ(h.remove("x-dup"), 1u);
  EXPECT_FALSE(h.has("x-dup"));
}

TEST(Harness, RenderTemplate) {
  std::map<std::string, uint16_t> ports;
  std::string error;
  auto out = renderTemplate("a: ${LISTEN}\nb: ${ADMIN}\nc: ${port:listen}\nd: ${UP}\ne: ${DIR}",
                            {{"UP", "127.0.0.1:1"}}, ports, "/tmp/x", &error);
  ASSERT_TRUE(out.has_value()) << error;
  ASSERT_EQ(ports.size(), 2u);
  const std::string listen = std::to_string(ports["listen"]);
  EXPECT_EQ(*out, "a: 127.0.0.1:" + listen + "\nb: 127.0.0.1:" + std::to_string(ports["admin"]) +
                      "\nc: " + listen + "\nd: 127.0.0.1:1\ne: /tmp/x");
  // Ports stay the same on the next render (a reload keeps its listener).
  auto again = renderTemplate("${LISTEN}", {}, ports, "/tmp/x");
  EXPECT_EQ(*again, "127.0.0.1:" + listen);
  EXPECT_FALSE(renderTemplate("${NOPE}", {}, ports, "/tmp/x", &error).has_value());
  EXPECT_NE(error.find("NOPE"), std::string::npos);
}

TEST(Harness, ParseMetric) {
  const std::string text =
      "# HELP remora_downstream_requests_total Requests.\n"
      "# TYPE remora_downstream_requests_total counter\n"
      "remora_downstream_requests_total{listener=\"a\",code=\"200\"} 5\n"
      "remora_downstream_requests_total{listener=\"b\",code=\"200\"} 7\n"
      "remora_downstream_requests_total{listener=\"a\",code=\"503\"} 1\n"
      "remora_downstream_requests_total_extra{code=\"200\"} 100\n"
      "remora_config_version 3\n"
      "remora_weird{route=\"x,y}\\\"z\"} 2.5\n";
  EXPECT_EQ(parseMetric(text, "remora_downstream_requests_total", {{"code", "200"}}), 12.0);
  EXPECT_EQ(
      parseMetric(text, "remora_downstream_requests_total", {{"code", "200"}, {"listener", "b"}}),
      7.0);
  EXPECT_EQ(parseMetric(text, "remora_downstream_requests_total"), 13.0);
  EXPECT_EQ(parseMetric(text, "remora_config_version"), 3.0);
  EXPECT_EQ(parseMetric(text, "remora_weird", {{"route", "x,y}\"z"}}), 2.5);
  EXPECT_FALSE(parseMetric(text, "remora_downstream_requests_total", {{"code", "404"}}));
  EXPECT_FALSE(parseMetric(text, "remora_missing"));
}

}  // namespace
}  // namespace remora::itest
