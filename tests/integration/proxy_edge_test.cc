// Remora end to end, the less travelled paths: pipelining, HTTP/1.0, half-closed clients,
// transfer codings, 100-continue, the JSON access log, listeners added by a reload.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "harness.h"

#ifndef REMORA_TARGET_DEFINED
#define REMORA_TARGET_DEFINED 0
#endif

namespace remora::itest {
namespace {

constexpr std::string_view kConfig = R"(
admin: { address: ${ADMIN} }
workers: 1
drain_timeout: 5s
${ACCESS_LOG}
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: 5s
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
)";

class ProxyEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED) GTEST_SKIP() << "the build has no `remora` target yet";
    ASSERT_TRUE(up_.start());
  }
  void start(const std::string& access_log = "") {
    ASSERT_TRUE(remora_.start(kConfig, {{"UP", up_.address()}, {"ACCESS_LOG", access_log}}));
  }
  TempDir tmp_;
  FakeUpstream up_{tmp_, "main"};
  RemoraProcess remora_{tmp_};
};

TEST_F(ProxyEdgeTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  HttpClient client = remora_.client();
  std::string batch;
  for (int i = 0; i < 20; ++i) {
    batch += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nhost: x\r\n\r\n";
  }
  ASSERT_TRUE(client.sendRaw(batch));
  for (int i = 0; i < 20; ++i) {
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << "response " << i << ": " << r.error;
    EXPECT_EQ(r.status, 200);
    auto echo = nlohmann::json::parse(r.body, nullptr, false);
    ASSERT_FALSE(echo.is_discarded()) << r.body;
    EXPECT_EQ(echo.value("path", ""), "/p" + std::to_string(i));
  }
  EXPECT_EQ(client.connectionsOpened(), 1);
}

TEST_F(ProxyEdgeTest, Http10ClientGetsCloseDelimitedBodyIntact) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw("GET /old HTTP/1.0\r\nx-fake-chunked: 1\r\nx-fake-body-size: 5000\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), 5000u);
  EXPECT_FALSE(r.chunked) << "HTTP/1.0 clients do not understand chunked";
  EXPECT_EQ(sha256Hex(r.body), r.header("x-response-sha256"));
  EXPECT_TRUE(client.waitServerClosed());
}

TEST_F(ProxyEdgeTest, HalfClosedClientStillGetsItsResponse) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw("GET /half HTTP/1.1\r\nhost: x\r\nx-fake-delay-ms: 100\r\n\r\n"));
  ASSERT_TRUE(client.shutdownWrite());
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(client.waitServerClosed());
}

// A client may pipeline requests and half-close at once (it has nothing more to send): each
// whole request still gets its answer, in order, a local one (the 404) included; the bytes of an
// unfinished one behind them are dropped, and the connection closes.
TEST_F(ProxyEdgeTest, HalfClosedClientGetsAnAnswerToEveryPipelinedRequest) {
  start();
  HttpClient client = remora_.client();
  const std::string slow = "GET /slow HTTP/1.1\r\nhost: x\r\nx-fake-delay-ms: 50\r\n\r\n";
  const std::string local = "OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n";  // no route: 404
  const std::string fast = "GET /fast HTTP/1.1\r\nhost: x\r\n\r\n";
  ASSERT_TRUE(client.sendRaw(slow + local + fast + local + slow + "GET /unfinished HTTP/1.1\r\nho"));
  ASSERT_TRUE(client.shutdownWrite());
  const std::vector<std::pair<int, std::string>> expected = {
      {200, "/slow"}, {404, ""}, {200, "/fast"}, {404, ""}, {200, "/slow"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(i);
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, expected[i].first) << r.body;
    if (r.status == 200) {
      auto echo = nlohmann::json::parse(r.body, nullptr, false);
      ASSERT_FALSE(echo.is_discarded()) << r.body;
      EXPECT_EQ(echo.value("path", ""), expected[i].second);
    }
  }
  bool closed = false;
  EXPECT_EQ(client.readUntilClosed(closed), "") << "an answer to the unfinished request";
  EXPECT_TRUE(closed);
  auto stats = up_.stats();
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->requests, 3u);
}

// A local reply (here a 404) to a request without a body leaves the connection open for the next
// request, as Envoy's do: a client refused by a rate limit or an open breaker does not have to
// reconnect for every request. One sent before a request's body has arrived ends the connection
// (where that body ends is not known to anyone reading it next).
TEST_F(ProxyEdgeTest, LocalRepliesKeepTheConnectionUnlessABodyIsUnread) {
  start();
  for (const std::string version : {"1.1", "1.0"}) {
    SCOPED_TRACE("HTTP/" + version);
    // (HTTP/1.0 keeps the connection only when the answer says so.)
    const std::string rest = " HTTP/" + version + "\r\nhost: x\r\nconnection: keep-alive\r\n\r\n";
    HttpClient client = remora_.client();
    ASSERT_TRUE(client.sendRaw("OPTIONS *" + rest));
    Response refused = client.readResponse();
    ASSERT_TRUE(refused.ok()) << refused.error;
    EXPECT_EQ(refused.status, 404);
    EXPECT_TRUE(refused.keep_alive) << "connection: " << refused.header("connection");
    if (version == "1.0") {
      EXPECT_EQ(refused.header("connection"), "keep-alive");
    }
    ASSERT_TRUE(client.sendRaw("GET /after" + rest));
    Response next = client.readResponse();
    ASSERT_TRUE(next.ok()) << next.error;
    EXPECT_EQ(next.status, 200);
    EXPECT_EQ(client.connectionsOpened(), 1);
  }

  HttpClient with_body = remora_.client();
  ASSERT_TRUE(with_body.sendRaw("OPTIONS * HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n"));
  Response r = with_body.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(with_body.waitServerClosed());
}

TEST_F(ProxyEdgeTest, UnsupportedTransferCodingGets501) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw(
      "POST /gz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 501);
  EXPECT_TRUE(client.waitServerClosed());
  EXPECT_EQ(up_.stats()->requests, 0u);
}

TEST_F(ProxyEdgeTest, UpstreamStatusOutside100To599Gets502) {
  start();
  HttpClient client = remora_.client();
  for (const char* status : {"600", "999"}) {
    Response r = client.get("/bad-status", {{"x-fake-status", status}});
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 502) << "upstream status " << status << " was passed on";
    EXPECT_NE(r.body.find("outside 100-599"), std::string::npos) << r.body;
  }
  // The connection that failed was dropped, not pooled; a valid status still passes.
  Response ok = client.get("/good", {{"x-fake-status", "599"}});
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.status, 599);
}

TEST_F(ProxyEdgeTest, ExpectContinueIsAnsweredByTheProxy) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.sendRaw(
      "POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"));
  // The proxy answers "100 Continue" before any body byte was sent (readResponse() below skips
  // interim responses, as clients do).
  ASSERT_TRUE(client.waitReadable(Duration(2000))) << "no 100 Continue while the body was held";
  ASSERT_TRUE(client.sendRaw("hello"));
  Response r = client.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-body-length"), "5");
  auto echo = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_FALSE(echo.is_discarded());
  EXPECT_FALSE(echo["headers"].contains("expect")) << "the expectation was forwarded";
}

TEST_F(ProxyEdgeTest, AccessLogWritesOneJsonLinePerRequest) {
  std::string path = (tmp_.path() / "access.log").string();
  start("access_log: { path: " + path + " }");
  HttpClient client = remora_.client();
  ASSERT_EQ(client.get("/a", {{"x-request-id", "rid-1"}}).status, 200);
  ASSERT_EQ(client.get("/b", {{"x-fake-status", "503"}}).status, 503);
  std::vector<nlohmann::json> lines;
  ASSERT_TRUE(waitFor([&] {
    lines.clear();
    std::istringstream in(readFile(path));
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) lines.push_back(j);
    }
    return lines.size() >= 2;
  }, Duration(5000)));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["path"], "/a");
  EXPECT_EQ(lines[0]["status"], 200);
  EXPECT_EQ(lines[0]["request_id"], "rid-1");
  EXPECT_EQ(lines[0]["cluster"], "main");
  EXPECT_EQ(lines[0]["attempts"], 1);
  EXPECT_EQ(lines[1]["status"], 503);
  EXPECT_TRUE(lines[1].contains("duration_ms"));
}

TEST_F(ProxyEdgeTest, ListenerAddedByReloadAcceptsAndOldOneKeepsConnections) {
  start();
  HttpClient kept = remora_.client();
  ASSERT_EQ(kept.get("/before").status, 200);
  uint16_t second = freePort();
  ASSERT_TRUE(remora_.reload(R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes: [ { match: { prefix: / }, cluster: main } ]
  - name: second
    address: 127.0.0.1:${SECOND}
    routes: [ { match: { prefix: / }, cluster: main } ]
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
)",
                             {{"UP", up_.address()}, {"SECOND", std::to_string(second)}}));
  HttpClient fresh(second);
  EXPECT_TRUE(waitFor([&] { return fresh.get("/new").status == 200; }, Duration(5000)));
  Response r = kept.get("/after");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(kept.connectionsOpened(), 1) << "the reload dropped a kept listener's connection";
}

}  // namespace
}  // namespace remora::itest
