// HTTP/1.1 Upgrade (WebSocket's handshake) end to end: the real `remora` between HttpClient and
// fake-upstream, whose 101 turns the connection into an echo tunnel (tests/fake_upstream/README.md).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "harness.h"

#ifndef REMORA_TARGET_DEFINED
#define REMORA_TARGET_DEFINED 0
#endif

namespace remora::itest {
namespace {

constexpr std::string_view kConfig = R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    idle_timeout: ${IDLE_TIMEOUT}
    routes:
      - match: { prefix: / }
        cluster: main
        timeout: ${ROUTE_TIMEOUT}
clusters:
  - name: main
    connect_timeout: 500ms
    endpoints: [ { address: ${UP} } ]
)";

constexpr std::string_view kUpgradeHead =
    "GET /chat HTTP/1.1\r\n"
    "host: chat.internal\r\n"
    "connection: Upgrade\r\n"
    "upgrade: websocket\r\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "sec-websocket-version: 13\r\n";

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED) GTEST_SKIP() << "the build has no `remora` target yet";
    ASSERT_TRUE(remoraBinaryExists()) << "not built: " << remoraBinary();
  }

  void start(const Vars& overrides = {}) {
    ASSERT_TRUE(up_.start());
    Vars vars{{"UP", up_.address()}, {"IDLE_TIMEOUT", "30s"}, {"ROUTE_TIMEOUT", "5s"}};
    for (const auto& [k, v] : overrides) vars[k] = v;
    ASSERT_TRUE(remora_.start(kConfig, vars));
  }

  // Sends the WebSocket handshake with `extra` header lines (each ending in CRLF) and `early`
  // bytes right behind it, and reads the response head.
  Response handshake(HttpClient& client, std::string_view extra = {},
                     std::string_view early = {}) {
    EXPECT_TRUE(client.connect());
    std::string req(kUpgradeHead);
    req.append(extra).append("\r\n").append(early);
    EXPECT_TRUE(client.sendRaw(req));
    return client.readResponse();
  }

  TempDir tmp_;
  FakeUpstream up_{tmp_, "main"};
  RemoraProcess remora_{tmp_};
};

TEST_F(UpgradeTest, WebSocketHandshakeBecomesATunnelBothWays) {
  start();
  HttpClient client = remora_.client();
  Response r = handshake(client, "x-fake-upgrade-greeting: hello from upstream\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 101);
  EXPECT_EQ(r.header("upgrade"), "websocket");
  EXPECT_EQ(r.header("connection"), "upgrade");
  EXPECT_EQ(r.header("x-upstream-name"), "main");
  // Sent by the upstream in the same write as its 101.
  EXPECT_EQ(client.readRaw(19), "hello from upstream");
  EXPECT_EQ(remora_.metric("remora_downstream_upgrades_active", {{"listener", "ingress"}}), 1);

  // More than the flow-control watermark (256 KiB) each way, so both directions pause and resume.
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i * 7 % 26);
  std::string echoed;
  constexpr size_t kPiece = 64 * 1024;
  for (size_t off = 0; off < payload.size(); off += kPiece) {
    ASSERT_TRUE(client.sendRaw(std::string_view(payload).substr(off, kPiece)));
    echoed += client.readRaw(off + kPiece - echoed.size());
  }
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload) << "the echo differs from what was sent";

  // The client's FIN reaches the upstream, whose last words and FIN come back.
  ASSERT_TRUE(client.shutdownWrite());
  bool closed = false;
  EXPECT_EQ(client.readUntilClosed(closed), "tunnel closed\n");
  EXPECT_TRUE(closed);

  EXPECT_TRUE(waitFor(
      [&] {
        return remora_.metric("remora_downstream_requests_total",
                              {{"listener", "ingress"}, {"code", "101"}}) == 1;
      },
      Duration(3000)))
      << "a finished tunnel counts as one request answered 101";
  EXPECT_TRUE(waitFor(
      [&] {
        return remora_.metric("remora_downstream_upgrades_active", {{"listener", "ingress"}}) == 0;
      },
      Duration(3000)));
  EXPECT_EQ(remora_.metric("remora_downstream_upgrades_total", {{"listener", "ingress"}}), 1);
}

TEST_F(UpgradeTest, BytesSentBehindTheHandshakeReachTheUpstream) {
  start();
  HttpClient client = remora_.client();
  Response r = handshake(client, {}, "early frame");
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 101);
  EXPECT_EQ(client.readRaw(11), "early frame");
}

// A client may half-close right after its request (legal in HTTP/1.1): once the 101 comes, the
// upstream hears the FIN, and its answer still reaches the client.
TEST_F(UpgradeTest, AClientFinBeforeThe101ReachesTheUpstreamOnceTheTunnelStarts) {
  start();
  HttpClient client = remora_.client();
  ASSERT_TRUE(client.connect());
  std::string req(kUpgradeHead);
  req.append("x-fake-delay-ms: 200\r\n\r\nlast words");
  ASSERT_TRUE(client.sendRaw(req));
  ASSERT_TRUE(client.shutdownWrite());
  Response r = client.readResponse();
  ASSERT_EQ(r.status, 101) << r.error;
  bool closed = false;
  EXPECT_EQ(client.readUntilClosed(closed), "last wordstunnel closed\n");
  EXPECT_TRUE(closed);
}

TEST_F(UpgradeTest, TheTunnelOutlivesTheRouteTimeout) {
  start({{"ROUTE_TIMEOUT", "300ms"}});
  HttpClient client = remora_.client();
  Response r = handshake(client);
  ASSERT_EQ(r.status, 101) << r.error;
  // The route timeout bounds the wait for the 101, not the tunnel: well past it, the tunnel
  // still carries bytes.
  EXPECT_FALSE(client.waitServerClosed(Duration(900)));
  ASSERT_TRUE(client.sendRaw("ping"));
  EXPECT_EQ(client.readRaw(4), "ping");
}

TEST_F(UpgradeTest, ASilentTunnelIsClosedAfterIdleTimeout) {
  start({{"IDLE_TIMEOUT", "400ms"}});
  HttpClient client = remora_.client();
  Response r = handshake(client);
  ASSERT_EQ(r.status, 101) << r.error;
  // Traffic keeps it open...
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(client.waitServerClosed(Duration(200)));
    ASSERT_TRUE(client.sendRaw("x"));
    EXPECT_EQ(client.readRaw(1), "x");
  }
  // ...silence closes it.
  const auto quiet_from = Clock::now();
  EXPECT_TRUE(client.waitServerClosed(Duration(5000)));
  EXPECT_GE(Clock::now() - quiet_from, Duration(350));
}

TEST_F(UpgradeTest, TheUpstreamClosingEndsTheTunnelAfterItsLastBytes) {
  start();
  HttpClient client = remora_.client();
  Response r = handshake(client, "x-fake-upgrade-greeting: bye\r\nx-fake-upgrade-close: 1\r\n");
  ASSERT_EQ(r.status, 101) << r.error;
  bool closed = false;
  EXPECT_EQ(client.readUntilClosed(closed), "bye");
  EXPECT_TRUE(closed);
}

TEST_F(UpgradeTest, ADeclinedUpgradeIsAnOrdinaryResponseAndTheConnectionGoesOn) {
  start();
  HttpClient client = remora_.client();
  Response r = handshake(client, "x-fake-upgrade-refuse: 1\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  auto echo = nlohmann::json::parse(r.body);
  EXPECT_EQ(echo["headers"].value("upgrade", ""), "websocket") << r.body;
  Response next = client.get("/after");
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(client.connectionsOpened(), 1);
}

TEST_F(UpgradeTest, A101TheRequestDidNotAskForIs502) {
  start();
  HttpClient client = remora_.client();
  Response r = client.get("/plain", {{"x-fake-status", "101"}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("did not ask to upgrade"), std::string::npos) << r.body;
}

TEST_F(UpgradeTest, A101WithoutAnUpgradeHeaderIs502) {
  start();
  HttpClient client = remora_.client();
  Response r = handshake(client, "x-fake-upgrade-no-header: 1\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("without an Upgrade header"), std::string::npos) << r.body;
}

// h2c is HTTP/2 to the next hop, which speaks HTTP/1.1 upstream; and a server must ignore an
// HTTP/1.0 Upgrade (RFC 9110 7.8). Both go up as ordinary requests without Upgrade.
TEST_F(UpgradeTest, H2cAndHttp10UpgradesAreNotRelayed) {
  start();
  for (const auto& [version, protocol] : {std::pair{"HTTP/1.1", "h2c"},
                                          std::pair{"HTTP/1.0", "websocket"}}) {
    SCOPED_TRACE(std::string(version) + " " + protocol);
    HttpClient client = remora_.client();
    ASSERT_TRUE(client.connect());
    std::string req = "GET /x ";
    req.append(version).append("\r\nhost: a\r\nconnection: upgrade\r\nupgrade: ");
    req.append(protocol).append("\r\n\r\n");
    ASSERT_TRUE(client.sendRaw(req));
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
    auto echo = nlohmann::json::parse(r.body);
    EXPECT_FALSE(echo["headers"].contains("upgrade")) << r.body;
  }
}

// A route's `upgrades` lists what it relays: others go up as ordinary requests, without Upgrade.
TEST_F(UpgradeTest, ARoutesUpgradesListLimitsWhatIsRelayed) {
  ASSERT_TRUE(up_.start());
  ASSERT_TRUE(remora_.start(R"(
admin: { address: ${ADMIN} }
workers: 1
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: /none }
        cluster: main
        upgrades: []
      - match: { prefix: / }
        cluster: main
        upgrades: [websocket]
clusters:
  - name: main
    endpoints: [ { address: ${UP} } ]
)",
                            {{"UP", up_.address()}}));
  struct Case {
    const char* path;
    const char* offered;
    int status;
  };
  for (const Case& c : {Case{"/chat", "websocket", 101}, Case{"/chat", "WebSocket/13", 101},
                        Case{"/chat", "foo", 200}, Case{"/chat", "websocket, foo", 200},
                        Case{"/none/chat", "websocket", 200}}) {
    SCOPED_TRACE(std::string(c.path) + " " + c.offered);
    HttpClient client = remora_.client();
    ASSERT_TRUE(client.connect());
    std::string req = "GET ";
    req.append(c.path).append(" HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: ");
    req.append(c.offered).append("\r\n\r\n");
    ASSERT_TRUE(client.sendRaw(req));
    Response r = client.readResponse();
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, c.status);
    if (c.status == 200) {
      EXPECT_FALSE(nlohmann::json::parse(r.body)["headers"].contains("upgrade")) << r.body;
    }
  }
}

}  // namespace
}  // namespace remora::itest
