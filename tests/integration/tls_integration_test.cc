// TLS end to end with the real binaries: termination on a listener (SNI, mTLS, client identity in
// x-forwarded-client-cert and in route matching), two Remora sidecars talking mTLS to each other
// (pooled TLS connections, session resumption, hostname verification) and certificate rotation on
// SIGHUP. Certificates are made for each test by a test CA (tests/tls/test_certs.h).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "harness.h"
#include "test_certs.h"
#include "tls_client.h"

#ifndef REMORA_TARGET_DEFINED
#define REMORA_TARGET_DEFINED 0
#endif

namespace remora::itest {
namespace {

using remora::testing::IssuedCert;
using remora::testing::TestCa;

// An inbound sidecar: TLS (optionally mTLS) in front of fake upstream ${UP}. Routes: callers whose
// certificate says spiffe://mesh/web reach /admin-only; everyone else only the rest.
constexpr std::string_view kInbound = R"(
admin: { address: ${ADMIN} }
workers: 1
drain_timeout: 2s
listeners:
  - name: inbound
    address: ${LISTEN}
    idle_timeout: ${IDLE}
    tls:
      cert_file: ${CERT}
      key_file: ${KEY}
${EXTRA_TLS}
    routes:
${EXTRA_ROUTES}
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [{ address: ${UP} }]
  - name: nowhere
    connect_timeout: 200ms
    endpoints: [{ address: 127.0.0.1:1 }]
)";

// An outbound sidecar: plain HTTP from the app, mTLS to the inbound sidecar ${PEER}.
constexpr std::string_view kOutbound = R"(
admin: { address: ${ADMIN} }
workers: 1
drain_timeout: 2s
listeners:
  - name: outbound
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: orders
        retry: { attempts: 1 }
clusters:
  - name: orders
    connect_timeout: 1s
    endpoints: [{ address: ${PEER} }]
    tls:
      ca_file: ${CA}
      cert_file: ${CERT}
      key_file: ${KEY}
      sni: ${SNI}
)";

class TlsIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED) GTEST_SKIP() << "the build has no `remora` target yet";
    ASSERT_TRUE(remoraBinaryExists()) << "not built: " << remoraBinary();
    ca_file_ = ca_.writeCert(tmp_.path());
    orders_ = ca_.issue(tmp_.path(), "orders", {"DNS:orders.internal", "URI:spiffe://mesh/orders"});
    web_ = ca_.issue(tmp_.path(), "web", {"URI:spiffe://mesh/web"});
    batch_ = ca_.issue(tmp_.path(), "batch", {"URI:spiffe://mesh/batch"});
    ASSERT_TRUE(up_.start());
  }

  // Starts the outbound sidecar: the web service's, to the inbound one over mTLS with `sni`.
  ::testing::AssertionResult startOutbound(const std::string& sni) {
    return outbound_.start(kOutbound,
                           {{"PEER", "127.0.0.1:" + std::to_string(inbound_.listenPort())},
                            {"CA", ca_file_},
                            {"CERT", web_.cert_file},
                            {"KEY", web_.key_file},
                            {"SNI", sni}});
  }

  // Starts the inbound sidecar; `mtls` adds client_ca_file and a client_identity route.
  ::testing::AssertionResult startInbound(bool mtls, std::string idle = "60s") {
    Vars vars{{"UP", up_.address()},
              {"CERT", orders_.cert_file},
              {"KEY", orders_.key_file},
              {"IDLE", idle},
              {"EXTRA_TLS", ""},
              {"EXTRA_ROUTES", ""}};
    if (mtls) {
      // An RBAC-style deny: callers other than spiffe://mesh/web reach /admin-only's second
      // route, whose cluster is a closed port and whose fallback answers 403.
      vars["EXTRA_TLS"] = "      client_ca_file: " + ca_file_;
      vars["EXTRA_ROUTES"] =
          "      - match: { prefix: /admin-only, client_identity: \"spiffe://mesh/web\" }\n"
          "        cluster: app\n"
          "      - match: { prefix: /admin-only }\n"
          "        cluster: nowhere\n"
          "        fallback: { status: 403, body: forbidden }\n";
    }
    return inbound_.start(kInbound, vars);
  }

  TlsClientOptions clientOptions(const IssuedCert* cert, std::string sni = "orders.internal") {
    TlsClientOptions o;
    o.ca_file = ca_file_;
    o.sni = std::move(sni);
    if (cert != nullptr) {
      o.cert_file = cert->cert_file;
      o.key_file = cert->key_file;
    }
    return o;
  }

  TempDir tmp_;
  TestCa ca_{"mesh-ca"};
  std::string ca_file_;
  IssuedCert orders_, web_, batch_;
  FakeUpstream up_{tmp_, "app"};
  RemoraProcess inbound_{tmp_, "inbound"};
  RemoraProcess outbound_{tmp_, "outbound"};
};

TEST_F(TlsIntegrationTest, TerminatesTlsAndForwardsHttpsProto) {
  ASSERT_TRUE(startInbound(false));
  TlsClient client(inbound_.listenPort(), clientOptions(nullptr));
  for (int i = 0; i < 3; ++i) {
    Response r = client.get("/hello");
    ASSERT_TRUE(r.complete) << r.error;
    EXPECT_EQ(r.status, 200);
    nlohmann::json echo = parseJson(r.body);
    EXPECT_EQ(echo["headers"]["x-forwarded-proto"], "https");
    // No mTLS: no client certificate to describe, and a client's own claim is dropped.
    EXPECT_FALSE(echo["headers"].contains("x-forwarded-client-cert"));
  }
  EXPECT_EQ(client.peerCommonName(), "orders");
  // Three requests, one connection, one handshake.
  EXPECT_EQ(inbound_.metric("remora_downstream_tls_handshakes_total"), 1);
  EXPECT_EQ(inbound_.metric("remora_downstream_connections_total"), 1);
}

TEST_F(TlsIntegrationTest, PlainHttpOnATlsListenerIsRefused) {
  ASSERT_TRUE(startInbound(false));
  HttpClient plain(inbound_.listenPort());
  Response r = plain.get("/");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(waitFor([&] {
    return inbound_.metric("remora_downstream_tls_handshake_errors_total").value_or(0) >= 1;
  }));
  EXPECT_EQ(up_.stats()->requests, 0u);
  // The listener still serves TLS clients.
  TlsClient client(inbound_.listenPort(), clientOptions(nullptr));
  EXPECT_EQ(client.get("/").status, 200) << client.error();
}

TEST_F(TlsIntegrationTest, MutualTlsRequiresATrustedClientCertificate) {
  ASSERT_TRUE(startInbound(true));
  // No certificate: refused (TLS 1.3 reports it on the first read).
  TlsClient anonymous(inbound_.listenPort(), clientOptions(nullptr));
  Response r = anonymous.get("/");
  EXPECT_FALSE(r.complete);
  // A certificate from another CA: refused.
  TestCa other("other-ca");
  IssuedCert rogue = other.issue(tmp_.path(), "rogue", {"URI:spiffe://mesh/web"});
  TlsClient intruder(inbound_.listenPort(), clientOptions(&rogue));
  r = intruder.get("/");
  EXPECT_FALSE(r.complete);
  EXPECT_TRUE(waitFor([&] {
    return inbound_.metric("remora_downstream_tls_handshake_errors_total").value_or(0) >= 2;
  }));
  EXPECT_EQ(up_.stats()->requests, 0u);

  // A trusted certificate: served, and the upstream learns who called, whatever the client claims.
  TlsClient web(inbound_.listenPort(), clientOptions(&web_));
  r = web.get("/", "x-forwarded-client-cert: URI=spiffe://mesh/admin\r\n");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 200);
  std::string xfcc = parseJson(r.body)["headers"].value("x-forwarded-client-cert", "");
  EXPECT_NE(xfcc.find("URI=spiffe://mesh/web"), std::string::npos) << xfcc;
  EXPECT_NE(xfcc.find("Hash="), std::string::npos) << xfcc;
  EXPECT_NE(xfcc.find("Subject=\"CN=web\""), std::string::npos) << xfcc;
  EXPECT_EQ(xfcc.find("spiffe://mesh/admin"), std::string::npos) << xfcc;
}

TEST_F(TlsIntegrationTest, RoutesMatchOnTheClientIdentity) {
  ASSERT_TRUE(startInbound(true));
  TlsClient web(inbound_.listenPort(), clientOptions(&web_));
  TlsClient batch(inbound_.listenPort(), clientOptions(&batch_));
  Response r = web.get("/admin-only");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 200);
  // batch lands on the deny route.
  r = batch.get("/admin-only");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "forbidden");
  // Both reach the rest.
  EXPECT_EQ(batch.get("/public").status, 200);
  EXPECT_EQ(up_.stats()->requests, 2u);
}

TEST_F(TlsIntegrationTest, SniPicksTheCertificate) {
  IssuedCert shop = ca_.issue(tmp_.path(), "shop", {"DNS:shop.example", "DNS:*.shop.example"});
  Vars vars{{"UP", up_.address()},      {"CERT", orders_.cert_file}, {"KEY", orders_.key_file},
            {"IDLE", "60s"},           {"EXTRA_ROUTES", ""},
            {"EXTRA_TLS", "      certificates:\n        - { cert_file: " + shop.cert_file +
                              ", key_file: " + shop.key_file + " }"}};
  ASSERT_TRUE(inbound_.start(kInbound, vars));
  for (const auto& [sni, cn] : std::vector<std::pair<std::string, std::string>>{
           {"shop.example", "shop"}, {"api.shop.example", "shop"}, {"orders.internal", "orders"}}) {
    TlsClient c(inbound_.listenPort(), clientOptions(nullptr, sni));
    Response r = c.get("/");
    ASSERT_TRUE(r.complete) << sni << ": " << r.error;
    EXPECT_EQ(c.peerCommonName(), cn) << sni;
  }
}

TEST_F(TlsIntegrationTest, TwoSidecarsTalkMutualTlsOverPooledResumedConnections) {
  // The inbound sidecar closes idle connections after 300 ms, so the outbound one must reconnect
  // and can then resume its TLS session.
  ASSERT_TRUE(startInbound(true, "300ms"));
  ASSERT_TRUE(startOutbound("orders.internal"));
  HttpClient app(outbound_.listenPort());
  for (int i = 0; i < 20; ++i) {
    Response r = app.get("/orders/" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, 200);
    std::string xfcc = parseJson(r.body)["headers"].value("x-forwarded-client-cert", "");
    EXPECT_NE(xfcc.find("URI=spiffe://mesh/web"), std::string::npos) << xfcc;
    // Each sidecar counts its own tries; the client sees the outer one's, once.
    EXPECT_EQ(r.headers.count("x-remora-attempts"), 1u);
    EXPECT_EQ(r.headers.value("x-remora-attempts"), "1");
  }
  // Twenty requests, one pooled TLS connection, one full handshake.
  EXPECT_EQ(outbound_.metric("remora_upstream_tls_handshakes_total", {{"cluster", "orders"}}), 1);
  EXPECT_EQ(inbound_.metric("remora_downstream_connections_total"), 1);
  // The client_identity route admits the web sidecar.
  EXPECT_EQ(app.get("/admin-only").status, 200);

  // Once the inbound side closed the idle connection, the next request reconnects with a resumed
  // session.
  ASSERT_TRUE(waitFor(
      [&] { return inbound_.metric("remora_downstream_connections_active").value_or(1) == 0; },
      Duration(5000)));
  ASSERT_TRUE(waitFor(
      [&] {
        return outbound_.metric("remora_upstream_connections_active", {{"cluster", "orders"}})
                   .value_or(1) == 0;
      },
      Duration(5000)));
  Response r = app.get("/again");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(outbound_.metric("remora_upstream_tls_handshakes_total", {{"cluster", "orders"}}), 2);
  EXPECT_EQ(outbound_.metric("remora_upstream_tls_resumed_total", {{"cluster", "orders"}}), 1);
}

// A WebSocket between two sidecars over mTLS: the outbound one tunnels to a TLS upstream, the
// inbound one tunnels from a TLS client; the client's half-close crosses both as close_notify
// and FIN, and the upstream's last words and close come back.
TEST_F(TlsIntegrationTest, AWebSocketCrossesTwoSidecarsOverMutualTls) {
  ASSERT_TRUE(startInbound(true));
  ASSERT_TRUE(startOutbound("orders.internal"));
  HttpClient app(outbound_.listenPort());
  ASSERT_TRUE(app.connect());
  ASSERT_TRUE(app.sendRaw("GET /orders/ws HTTP/1.1\r\nhost: orders\r\nconnection: upgrade\r\n"
                          "upgrade: websocket\r\nx-fake-upgrade-greeting: hi\r\n\r\n"));
  Response r = app.readResponse();
  ASSERT_TRUE(r.ok()) << r.error;
  ASSERT_EQ(r.status, 101);
  EXPECT_EQ(r.header("upgrade"), "websocket");
  EXPECT_EQ(app.readRaw(2), "hi");
  std::string payload(300 * 1024, 'w');  // past the flow-control watermark, through TLS twice
  ASSERT_TRUE(app.sendRaw(payload));
  EXPECT_TRUE(app.readRaw(payload.size()) == payload) << "the echo differs from what was sent";
  ASSERT_TRUE(app.shutdownWrite());
  bool closed = false;
  EXPECT_EQ(app.readUntilClosed(closed), "tunnel closed\n");
  EXPECT_TRUE(closed);
}

TEST_F(TlsIntegrationTest, UpstreamCertificateNotMatchingTheSniIsRefused) {
  ASSERT_TRUE(startInbound(true));
  ASSERT_TRUE(startOutbound("payments.internal"));
  HttpClient app(outbound_.listenPort());
  Response r = app.get("/");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_GE(r.status, 502);
  EXPECT_LE(r.status, 503);
  EXPECT_EQ(up_.stats()->requests, 0u);
  EXPECT_GE(outbound_.metric("remora_upstream_connect_failures_total", {{"cluster", "orders"}})
                .value_or(0),
            1);
}

TEST_F(TlsIntegrationTest, CertificateRotationOnSighupKeepsEstablishedConnections) {
  ASSERT_TRUE(startInbound(false));
  TlsClient established(inbound_.listenPort(), clientOptions(nullptr));
  ASSERT_EQ(established.get("/").status, 200) << established.error();
  EXPECT_EQ(established.peerCommonName(), "orders");

  // Same paths, new certificate: new connections get it after SIGHUP.
  IssuedCert next = ca_.issue(tmp_.path(), "orders-2026", {"DNS:orders.internal"});
  ASSERT_TRUE(writeFileAtomic(orders_.cert_file, readFile(next.cert_file)));
  ASSERT_TRUE(writeFileAtomic(orders_.key_file, readFile(next.key_file)));
  double version = inbound_.metric("remora_config_version").value_or(0);
  ASSERT_TRUE(inbound_.reload());
  ASSERT_TRUE(waitFor(
      [&] { return inbound_.metric("remora_config_version").value_or(0) > version; }));
  TlsClient fresh(inbound_.listenPort(), clientOptions(nullptr));
  ASSERT_EQ(fresh.get("/").status, 200) << fresh.error();
  EXPECT_EQ(fresh.peerCommonName(), "orders-2026");
  // The connection made before the reload still works on its old session.
  Response r = established.get("/still-here");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(established.peerCommonName(), "orders");

  // A key that does not match its certificate is rejected; the running certificate stays.
  ASSERT_TRUE(writeFileAtomic(orders_.key_file, readFile(web_.key_file)));
  version = inbound_.metric("remora_config_version").value_or(0);
  ASSERT_TRUE(inbound_.reload());
  ASSERT_TRUE(waitFor([&] {
    return inbound_.metric("remora_config_updates_total", {{"source", "file"}, {"result", "nack"}})
               .value_or(0) >= 1;
  }));
  EXPECT_EQ(inbound_.metric("remora_config_version"), version);
  TlsClient after(inbound_.listenPort(), clientOptions(nullptr));
  ASSERT_EQ(after.get("/").status, 200) << after.error();
  EXPECT_EQ(after.peerCommonName(), "orders-2026");
}

TEST_F(TlsIntegrationTest, ValidateNamesTheBadFile) {
  std::string yaml = R"(listeners:
  - name: in
    address: 127.0.0.1:1
    tls: { cert_file: )" + orders_.cert_file + ", key_file: " +
                     (tmp_.path() / "missing.key").string() + R"( }
    routes: [{ match: { prefix: / }, cluster: app }]
clusters:
  - name: app
    endpoints: [{ address: 127.0.0.1:2 }]
)";
  ValidateResult r = RemoraProcess::validate(tmp_, "bad-tls.yaml", yaml);
  EXPECT_EQ(r.exit_code, std::optional<int>(1)) << r.output;
  EXPECT_NE(r.output.find("bad-tls.yaml:4:10: listener \"in\" tls: "), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("missing.key"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace remora::itest
