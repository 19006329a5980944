// tls::Session and tls::ContextCache: a client and a server session driven against each other in
// memory, with a CA and certificates made for each test.

#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_certs.h"

namespace remora::tls {
namespace {

using remora::testing::IssuedCert;
using remora::testing::TestCa;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("remora-tls-test-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    ca_file_ = ca_.writeCert(dir_);
    server_ = ca_.issue(dir_, "server", {"DNS:orders.internal", "URI:spiffe://mesh/orders"});
    client_ = ca_.issue(dir_, "client", {"URI:spiffe://mesh/web", "DNS:web.internal"});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  config::ListenerTls listenerTls(bool mtls) {
    config::ListenerTls t;
    t.cert_file = server_.cert_file;
    t.key_file = server_.key_file;
    if (mtls) t.client_ca_file = ca_file_;
    return t;
  }
  config::UpstreamTls upstreamTls(bool with_cert, std::string sni = "orders.internal") {
    config::UpstreamTls t;
    t.ca_file = ca_file_;
    t.sni = std::move(sni);
    if (with_cert) {
      t.cert_file = client_.cert_file;
      t.key_file = client_.key_file;
    }
    return t;
  }

  // Moves records between the two sessions until neither has anything to say. Plaintext read by
  // each side is appended to *_plain. Returns false if either side failed.
  static bool pump(Session& client, Session& server, std::string* client_plain = nullptr,
                   std::string* server_plain = nullptr) {
    char buf[16384];
    for (int round = 0; round < 20; ++round) {
      bool moved = false;
      if (!client.handshakeDone()) {
        if (client.handshake() < 0) return false;
      }
      if (client.hasOutput()) {
        std::string_view out = client.output();
        server.receive(out.data(), out.size());
        client.clearOutput();
        moved = true;
      }
      ssize_t n;
      while ((n = server.read(buf, sizeof(buf))) > 0) {
        if (server_plain != nullptr) server_plain->append(buf, static_cast<size_t>(n));
      }
      if (n == Session::kError) return false;
      if (server.hasOutput()) {
        std::string_view out = server.output();
        client.receive(out.data(), out.size());
        server.clearOutput();
        moved = true;
      }
      if (client.handshakeDone()) {
        while ((n = client.read(buf, sizeof(buf))) > 0) {
          if (client_plain != nullptr) client_plain->append(buf, static_cast<size_t>(n));
        }
        if (n == Session::kError) return false;
      }
      if (!moved) return true;
    }
    return true;
  }

  TestCa ca_{"remora-test-ca"};
  std::filesystem::path dir_;
  std::string ca_file_;
  IssuedCert server_;
  IssuedCert client_;
  ContextCache cache_;
};

TEST_F(TlsTest, HandshakeAndDataBothWaysWithAlpnHttp11) {
  std::string err;
  auto sctx = cache_.server(listenerTls(false), err);
  ASSERT_TRUE(sctx) << err;
  auto cctx = cache_.client(upstreamTls(false), err);
  ASSERT_TRUE(cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "127.0.0.1:443", "127.0.0.1");
  ASSERT_TRUE(pump(*client, *server)) << client->error() << " / " << server->error();
  ASSERT_TRUE(client->handshakeDone());
  EXPECT_EQ(client->alpn(), "http/1.1");
  EXPECT_TRUE(client->version() == "TLSv1.3" || client->version() == "TLSv1.2");

  std::string req = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
  uv_buf_t bufs[2] = {uv_buf_init(req.data(), 10), uv_buf_init(req.data() + 10, req.size() - 10)};
  ASSERT_TRUE(client->write(bufs, 2));
  std::string got_server, got_client;
  ASSERT_TRUE(pump(*client, *server, &got_client, &got_server));
  EXPECT_EQ(got_server, req);
  std::string big(100000, 'x');
  uv_buf_t b = uv_buf_init(big.data(), big.size());
  ASSERT_TRUE(server->write(&b, 1));
  ASSERT_TRUE(pump(*client, *server, &got_client, &got_server));
  EXPECT_EQ(got_client, big);
  // Without mTLS the server sees no verified peer.
  EXPECT_FALSE(server->peer().verified);
}

TEST_F(TlsTest, MutualTlsExposesTheVerifiedClientIdentity) {
  std::string err;
  auto sctx = cache_.server(listenerTls(true), err);
  ASSERT_TRUE(sctx) << err;
  auto cctx = cache_.client(upstreamTls(true), err);
  ASSERT_TRUE(cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  std::string req = "ping";
  ASSERT_TRUE(pump(*client, *server));
  uv_buf_t b = uv_buf_init(req.data(), req.size());
  ASSERT_TRUE(client->write(&b, 1));
  std::string got;
  ASSERT_TRUE(pump(*client, *server, nullptr, &got)) << server->error();
  EXPECT_EQ(got, "ping");
  const PeerIdentity& peer = server->peer();
  EXPECT_TRUE(peer.verified);
  EXPECT_EQ(peer.uris, std::vector<std::string>{"spiffe://mesh/web"});
  EXPECT_EQ(peer.dns, std::vector<std::string>{"web.internal"});
  EXPECT_EQ(peer.hash.size(), 64u);
  EXPECT_EQ(peer.xfccValue(), "Hash=" + peer.hash +
                                  ";Subject=\"CN=client\";URI=spiffe://mesh/web;DNS=web.internal");
  EXPECT_TRUE(peer.matches("spiffe://mesh/web"));
  EXPECT_TRUE(peer.matches("spiffe://mesh/*"));
  EXPECT_TRUE(peer.matches("web.internal"));
  EXPECT_FALSE(peer.matches("spiffe://mesh/orders"));
  EXPECT_FALSE(peer.matches("spiffe://other/*"));
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutACertificate) {
  std::string err;
  auto sctx = cache_.server(listenerTls(true), err);
  auto cctx = cache_.client(upstreamTls(false), err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  // TLS 1.3: the client believes it is done before the server checks its (missing) certificate.
  std::string req = "ping";
  pump(*client, *server);
  uv_buf_t b = uv_buf_init(req.data(), req.size());
  client->write(&b, 1);
  std::string got;
  EXPECT_FALSE(pump(*client, *server, nullptr, &got));
  EXPECT_TRUE(got.empty());
  EXPECT_NE(server->error().find("certificate"), std::string::npos) << server->error();
}

TEST_F(TlsTest, MutualTlsRefusesACertificateFromAnotherCa) {
  TestCa other("other-ca");
  IssuedCert intruder = other.issue(dir_, "intruder", {"URI:spiffe://mesh/web"});
  std::string err;
  auto sctx = cache_.server(listenerTls(true), err);
  config::UpstreamTls up = upstreamTls(true);
  up.cert_file = intruder.cert_file;
  up.key_file = intruder.key_file;
  auto cctx = cache_.client(up, err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  std::string req = "ping";
  pump(*client, *server);
  uv_buf_t b = uv_buf_init(req.data(), req.size());
  client->write(&b, 1);
  std::string got;
  EXPECT_FALSE(pump(*client, *server, nullptr, &got));
  EXPECT_TRUE(got.empty());
  EXPECT_NE(server->error().find("certificate"), std::string::npos) << server->error();
}

TEST_F(TlsTest, ClientVerifiesTheServerName) {
  std::string err;
  auto sctx = cache_.server(listenerTls(false), err);
  auto cctx = cache_.client(upstreamTls(false, "payments.internal"), err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  EXPECT_FALSE(pump(*client, *server));
  EXPECT_NE(client->error().find("hostname mismatch"), std::string::npos) << client->error();
}

TEST_F(TlsTest, ClientRefusesAServerFromAnUnknownCa) {
  TestCa other("other-ca");
  IssuedCert rogue = other.issue(dir_, "rogue", {"DNS:orders.internal"});
  config::ListenerTls lt;
  lt.cert_file = rogue.cert_file;
  lt.key_file = rogue.key_file;
  std::string err;
  auto sctx = cache_.server(lt, err);
  auto cctx = cache_.client(upstreamTls(false), err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  EXPECT_FALSE(pump(*client, *server));
  EXPECT_NE(client->error().find("certificate"), std::string::npos) << client->error();
}

TEST_F(TlsTest, SniChoosesAmongCertificates) {
  IssuedCert b = ca_.issue(dir_, "b", {"DNS:b.example", "DNS:*.wild.example"});
  config::ListenerTls lt = listenerTls(false);
  lt.certificates.push_back({b.cert_file, b.key_file});
  std::string err;
  auto sctx = cache_.server(lt, err);
  ASSERT_TRUE(sctx) << err;
  ASSERT_EQ(sctx->certificateNames().size(), 2u);
  for (const std::string name : {"b.example", "x.wild.example", "orders.internal"}) {
    auto cctx = cache_.client(upstreamTls(false, name), err);
    ASSERT_TRUE(cctx) << err;
    auto server = Session::server(sctx);
    auto client = Session::client(cctx, "k", "127.0.0.1");
    EXPECT_TRUE(pump(*client, *server)) << name << ": " << client->error();
  }
  // An unknown name gets the default certificate, which the client then refuses.
  auto cctx = cache_.client(upstreamTls(false, "nobody.example"), err);
  auto server = Session::server(sctx);
  auto client = Session::client(cctx, "k", "127.0.0.1");
  EXPECT_FALSE(pump(*client, *server));
}

TEST_F(TlsTest, ClientResumesItsSessionPerEndpoint) {
  std::string err;
  auto sctx = cache_.server(listenerTls(false), err);
  auto cctx = cache_.client(upstreamTls(false), err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto first_server = Session::server(sctx);
  auto first = Session::client(cctx, "10.0.0.1:443", "10.0.0.1");
  ASSERT_TRUE(pump(*first, *first_server));
  EXPECT_FALSE(first->resumed());
  // The first connection goes away without close_notify, as an idle one the server drops.
  first.reset();
  first_server.reset();

  auto second_server = Session::server(sctx);
  auto second = Session::client(cctx, "10.0.0.1:443", "10.0.0.1");
  ASSERT_TRUE(pump(*second, *second_server)) << second->error();
  EXPECT_TRUE(second->resumed());

  // Another endpoint has no session yet.
  auto third_server = Session::server(sctx);
  auto third = Session::client(cctx, "10.0.0.2:443", "10.0.0.2");
  ASSERT_TRUE(pump(*third, *third_server));
  EXPECT_FALSE(third->resumed());
}

TEST_F(TlsTest, MutualTlsSessionsResumeToo) {
  std::string err;
  auto sctx = cache_.server(listenerTls(true), err);
  auto cctx = cache_.client(upstreamTls(true), err);
  ASSERT_TRUE(sctx && cctx) << err;
  auto first_server = Session::server(sctx);
  auto first = Session::client(cctx, "k", "127.0.0.1");
  ASSERT_TRUE(pump(*first, *first_server));
  auto second_server = Session::server(sctx);
  auto second = Session::client(cctx, "k", "127.0.0.1");
  ASSERT_TRUE(pump(*second, *second_server)) << second->error();
  EXPECT_TRUE(second->resumed());
  // The resumed session still identifies the client.
  EXPECT_TRUE(second_server->peer().matches("spiffe://mesh/web"));
}

TEST_F(TlsTest, OldProtocolVersionsAreRefused) {
  std::string err;
  auto sctx = cache_.server(listenerTls(false), err);
  ASSERT_TRUE(sctx) << err;
  SSL_CTX* old = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
  SSL_CTX_set_security_level(old, 0);
  SSL* ssl = SSL_new(old);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);
  char* p = nullptr;
  long n = BIO_get_mem_data(out, &p);
  ASSERT_GT(n, 0);
  auto server = Session::server(sctx);
  server->receive(p, static_cast<size_t>(n));
  char buf[256];
  EXPECT_EQ(server->read(buf, sizeof(buf)), Session::kError);
  EXPECT_NE(server->error().find("protocol"), std::string::npos) << server->error();
  SSL_free(ssl);
  SSL_CTX_free(old);
}

TEST_F(TlsTest, ContextCacheReusesUnchangedFilesAndReloadsRotatedOnes) {
  std::string err;
  auto a = cache_.server(listenerTls(true), err);
  auto b = cache_.server(listenerTls(true), err);
  ASSERT_TRUE(a && b) << err;
  EXPECT_EQ(a.get(), b.get());
  auto c1 = cache_.client(upstreamTls(true), err);
  auto c2 = cache_.client(upstreamTls(true), err);
  EXPECT_EQ(c1.get(), c2.get());
  EXPECT_NE(c1.get(), cache_.client(upstreamTls(true, "other.internal"), err).get());

  // Same paths, new contents: a new context.
  IssuedCert rotated = ca_.issue(dir_, "rotated", {"DNS:orders.internal"});
  std::filesystem::copy_file(rotated.cert_file, server_.cert_file,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(rotated.key_file, server_.key_file,
                             std::filesystem::copy_options::overwrite_existing);
  auto c = cache_.server(listenerTls(true), err);
  ASSERT_TRUE(c) << err;
  EXPECT_NE(a.get(), c.get());
  EXPECT_NE(a->digest(), c->digest());
}

TEST_F(TlsTest, BadFilesAreReportedWithTheFileAndTheReason) {
  std::string err;
  config::ListenerTls lt = listenerTls(false);
  lt.key_file = (dir_ / "missing.key").string();
  EXPECT_FALSE(cache_.server(lt, err));
  EXPECT_NE(err.find("missing.key"), std::string::npos) << err;
  EXPECT_NE(err.find("No such file"), std::string::npos) << err;

  // A key that is not the certificate's.
  lt = listenerTls(false);
  lt.key_file = client_.key_file;
  EXPECT_FALSE(cache_.server(lt, err));
  EXPECT_NE(err.find("does not match"), std::string::npos) << err;

  // Not PEM at all.
  std::ofstream(dir_ / "junk.pem") << "hello\n";
  lt = listenerTls(false);
  lt.cert_file = (dir_ / "junk.pem").string();
  EXPECT_FALSE(cache_.server(lt, err));
  EXPECT_NE(err.find("no PEM certificate"), std::string::npos) << err;

  config::UpstreamTls up = upstreamTls(false);
  up.ca_file = (dir_ / "junk.pem").string();
  EXPECT_FALSE(cache_.client(up, err));
  EXPECT_NE(err.find("junk.pem"), std::string::npos) << err;
}

}  // namespace
}  // namespace remora::tls
