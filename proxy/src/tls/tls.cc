#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace remora::tls {

namespace {

// Mozilla "intermediate" for TLS 1.2 (forward secrecy, AEAD only); TLS 1.3 suites are OpenSSL's
// defaults, which are all fine.
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr size_t kMaxRecord = 16 * 1024;

// The OpenSSL error queue as one line, then cleared.
std::string opensslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    // "error:0A000086:SSL routines::certificate verify failed" -> keep the reason part.
    std::string_view s(buf);
    size_t pos = s.rfind(':');
    std::string_view reason = pos == std::string_view::npos ? s : s.substr(pos + 1);
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out.empty() ? "unknown TLS error" : out;
}

bool readFile(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

BioPtr memBio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

// SHA-256 over the settings and the contents they point at, as the cache key.
std::string digestOf(const std::vector<std::string>& parts) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  for (const auto& p : parts) {
    uint64_t n = p.size();
    EVP_DigestUpdate(md, &n, sizeof(n));
    EVP_DigestUpdate(md, p.data(), p.size());
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md, out, &len);
  EVP_MD_CTX_free(md);
  return hex(out, len);
}

// Loads a certificate chain (leaf first) and its key into `ctx`.
bool useCertificate(SSL_CTX* ctx, const std::string& cert_file, const std::string& cert_pem,
                    const std::string& key_file, const std::string& key_pem, std::string& error) {
  ERR_clear_error();
  BioPtr cb = memBio(cert_pem);
  X509* leaf = PEM_read_bio_X509_AUX(cb.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr) {
    error = "cert_file " + cert_file + " holds no PEM certificate (" + opensslErrors() + ")";
    return false;
  }
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) {
    error = "cert_file " + cert_file + ": " + opensslErrors();
    return false;
  }
  while (X509* extra = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      error = "cert_file " + cert_file + ": bad chain certificate: " + opensslErrors();
      return false;
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  BioPtr kb = memBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    error = "key_file " + key_file + " holds no PEM private key, or it is encrypted (" +
            opensslErrors() + ")";
    return false;
  }
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    error = "key_file " + key_file + " does not match the certificate in " + cert_file;
    return false;
  }
  return true;
}

// Adds every certificate of a PEM bundle to the context's trust store (and, for servers, to the
// list of CAs announced to clients).
bool useCaBundle(SSL_CTX* ctx, const std::string& file, const std::string& pem, bool announce,
                 std::string& error) {
  ERR_clear_error();
  BioPtr b = memBio(pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  while (X509* ca = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, ca);
    if (announce) SSL_CTX_add_client_CA(ctx, ca);
    X509_free(ca);
    ++count;
  }
  ERR_clear_error();
  if (count == 0) {
    error = file + " holds no PEM certificate";
    return false;
  }
  return true;
}

void setCommonOptions(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  // No SSL_MODE_RELEASE_BUFFERS: it gives an idle connection's ~34 KiB of record buffers back,
  // but costs a free + malloc per request on busy ones: keep-alive TLS req/s went from 0.73x to
  // 0.88x HAProxy without it (make bench-tls, perf/README.md).
  SSL_CTX_set_cipher_list(ctx, kCiphers12);
}

// SAN DNS names of a certificate, or its CN when it has none.
std::vector<std::string> certificateNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr,
                                                            nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type == GEN_DNS) {
        const ASN1_STRING* s = n->d.dNSName;
        names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<size_t>(ASN1_STRING_length(s)));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) {
      names.emplace_back(cn);
    }
  }
  for (auto& n : names) {
    for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return names;
}

bool nameMatches(std::string_view pattern, std::string_view host) {
  if (pattern == host) return true;
  // "*.example.com" matches exactly one label.
  if (pattern.size() > 2 && pattern.starts_with("*.")) {
    size_t dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && host.substr(dot) == pattern.substr(1);
  }
  return false;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  // Only HTTP/1.1 is spoken. A client that offers something else only (h2) gets no ALPN answer
  // and falls back to HTTP/1.1, as curl does.
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnHttp11, sizeof(kAlpnHttp11), in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int sessionExIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool isIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

// --- PeerIdentity ------------------------------------------------------------------------------

std::string PeerIdentity::xfccValue() const {
  std::string out = "Hash=" + hash;
  std::string escaped;
  for (char c : subject) {
    if (c == '"' || c == '\\') escaped.push_back('\\');
    escaped.push_back(c);
  }
  out += ";Subject=\"" + escaped + "\"";
  for (const auto& u : uris) out += ";URI=" + u;
  for (const auto& d : dns) out += ";DNS=" + d;
  return out;
}

bool PeerIdentity::matches(std::string_view pattern) const {
  if (!verified) return false;
  auto test = [&](const std::string& v) {
    if (!pattern.empty() && pattern.back() == '*') {
      return std::string_view(v).starts_with(pattern.substr(0, pattern.size() - 1));
    }
    return v == pattern;
  };
  for (const auto& u : uris) {
    if (test(u)) return true;
  }
  for (const auto& d : dns) {
    if (test(d)) return true;
  }
  return false;
}

// --- ServerContext -----------------------------------------------------------------------------

ServerContext::~ServerContext() {
  for (auto& c : certs_) SSL_CTX_free(c.ctx);
}

SSL* ServerContext::newSsl() const {
  SSL* ssl = SSL_new(certs_[0].ctx);
  if (ssl != nullptr) SSL_set_accept_state(ssl);
  return ssl;
}

std::vector<std::vector<std::string>> ServerContext::certificateNames() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& c : certs_) out.push_back(c.names);
  return out;
}

const ServerContext::Cert* ServerContext::certFor(std::string_view server_name) const {
  std::string host(server_name);
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Exact names first, then wildcards, in configuration order.
  for (const auto& c : certs_) {
    for (const auto& n : c.names) {
      if (n == host) return &c;
    }
  }
  for (const auto& c : certs_) {
    for (const auto& n : c.names) {
      if (nameMatches(n, host)) return &c;
    }
  }
  return nullptr;
}

int ServerContext::onServerName(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || self->certs_.size() < 2) return SSL_TLSEXT_ERR_OK;
  const Cert* c = self->certFor(name);
  // No match: the default certificate answers (the client decides whether it accepts it).
  if (c != nullptr && c->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx);
  return SSL_TLSEXT_ERR_OK;
}

// --- ClientContext -----------------------------------------------------------------------------

ClientContext::~ClientContext() {
  for (auto& [k, s] : sessions_) SSL_SESSION_free(s);
  SSL_CTX_free(ctx_);
}

SSL* ClientContext::newSsl(const std::string& session_key, const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  SSL_set_connect_state(ssl);
  const std::string& name = sni_.empty() ? host : sni_;
  if (!sni_.empty() || !isIpLiteral(host)) {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session_key);
  if (it != sessions_.end()) SSL_set_session(ssl, it->second);
  return ssl;
}

void ClientContext::storeSession(const std::string& session_key, SSL_SESSION* session) const {
  std::lock_guard<std::mutex> lock(mu_);
  SSL_SESSION*& slot = sessions_[session_key];
  if (slot != nullptr) SSL_SESSION_free(slot);
  slot = session;
}

// --- ContextCache ------------------------------------------------------------------------------

ServerContextConstSharedPtr ContextCache::server(const config::ListenerTls& cfg,
                                                 std::string& error) {
  struct Files {
    std::string cert_file, cert, key_file, key;
  };
  std::vector<Files> files;
  std::vector<std::string> parts{"server"};
  auto add = [&](const std::string& cert_file, const std::string& key_file) {
    Files f{cert_file, {}, key_file, {}};
    if (!readFile(cert_file, f.cert, error) || !readFile(key_file, f.key, error)) return false;
    parts.insert(parts.end(), {cert_file, f.cert, key_file, f.key});
    files.push_back(std::move(f));
    return true;
  };
  if (!cfg.cert_file.empty() && !add(cfg.cert_file, cfg.key_file)) return nullptr;
  for (const auto& c : cfg.certificates) {
    if (!add(c.cert_file, c.key_file)) return nullptr;
  }
  if (files.empty()) {
    error = "listener tls has no certificate";
    return nullptr;
  }
  std::string ca;
  if (!cfg.client_ca_file.empty() && !readFile(cfg.client_ca_file, ca, error)) return nullptr;
  parts.insert(parts.end(), {cfg.client_ca_file, ca});
  std::string digest = digestOf(parts);

  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = servers_.find(digest); it != servers_.end()) {
    if (auto existing = it->second.lock()) return existing;
  }
  std::shared_ptr<ServerContext> ctx(new ServerContext());
  ctx->digest_ = digest;
  ctx->require_client_cert_ = !cfg.client_ca_file.empty();
  // Session tickets are encrypted with the keys of the context the handshake started on: every
  // certificate's context shares the first one's, through SSL_set_SSL_CTX keeping session_ctx.
  for (const auto& f : files) {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    ServerContext::Cert cert{c, {}};
    ctx->certs_.push_back(cert);  // owned from here on, freed by ~ServerContext
    if (c == nullptr) {
      error = "cannot create a TLS context: " + opensslErrors();
      return nullptr;
    }
    setCommonOptions(c);
    SSL_CTX_set_alpn_select_cb(c, &selectAlpn, nullptr);
    static const unsigned char kSidCtx[] = "remora";
    SSL_CTX_set_session_id_context(c, kSidCtx, sizeof(kSidCtx) - 1);
    if (!useCertificate(c, f.cert_file, f.cert, f.key_file, f.key, error)) return nullptr;
    ctx->certs_.back().names = tls::certificateNames(SSL_CTX_get0_certificate(c));
    if (ctx->require_client_cert_) {
      if (!useCaBundle(c, "client_ca_file " + cfg.client_ca_file, ca, true, error)) return nullptr;
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  }
  SSL_CTX_set_tlsext_servername_callback(ctx->certs_[0].ctx, &ServerContext::onServerName);
  SSL_CTX_set_tlsext_servername_arg(ctx->certs_[0].ctx, ctx.get());
  std::erase_if(servers_, [](const auto& e) { return e.second.expired(); });  // rotated away
  servers_[digest] = ctx;
  return ctx;
}

ClientContextConstSharedPtr ContextCache::client(const config::UpstreamTls& cfg,
                                                 std::string& error) {
  std::string ca, cert, key;
  if (!cfg.ca_file.empty() && !readFile(cfg.ca_file, ca, error)) return nullptr;
  if (!cfg.cert_file.empty() && !readFile(cfg.cert_file, cert, error)) return nullptr;
  if (!cfg.key_file.empty() && !readFile(cfg.key_file, key, error)) return nullptr;
  std::string digest = digestOf({"client", cfg.ca_file, ca, cfg.cert_file, cert, cfg.key_file, key,
                                 cfg.sni});
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = clients_.find(digest); it != clients_.end()) {
    if (auto existing = it->second.lock()) return existing;
  }
  std::shared_ptr<ClientContext> ctx(new ClientContext());
  ctx->digest_ = digest;
  ctx->sni_ = cfg.sni;
  ctx->ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx->ctx_ == nullptr) {
    error = "cannot create a TLS context: " + opensslErrors();
    return nullptr;
  }
  SSL_CTX* c = ctx->ctx_;
  setCommonOptions(c);
  SSL_CTX_set_alpn_protos(c, kAlpnHttp11, sizeof(kAlpnHttp11));
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  if (!ca.empty()) {
    if (!useCaBundle(c, "ca_file " + cfg.ca_file, ca, false, error)) return nullptr;
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    error = "no ca_file and the system CA store cannot be loaded: " + opensslErrors();
    return nullptr;
  }
  if (!cert.empty() && !useCertificate(c, cfg.cert_file, cert, cfg.key_file, key, error)) {
    return nullptr;
  }
  // Sessions are kept by us, per endpoint, rather than in OpenSSL's internal cache (which is
  // keyed for servers only).
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, &Session::onNewSession);
  std::erase_if(clients_, [](const auto& e) { return e.second.expired(); });
  clients_[digest] = ctx;
  return ctx;
}

// --- Session -----------------------------------------------------------------------------------

Session::Session(SSL* ssl) : ssl_(ssl) {
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // "no data yet", not EOF
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_ex_data(ssl_, sessionExIndex(), this);
}

Session::~Session() {
  // A connection closed without close_notify (an idle upstream connection the server dropped)
  // would make OpenSSL mark its session not resumable. Only a failed connection should.
  if (error_.empty() && handshakeDone()) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);
}

std::unique_ptr<Session> Session::server(ServerContextConstSharedPtr ctx) {
  SSL* ssl = ctx->newSsl();
  if (ssl == nullptr) return nullptr;
  std::unique_ptr<Session> s(new Session(ssl));
  s->server_ctx_ = std::move(ctx);
  return s;
}

std::unique_ptr<Session> Session::client(ClientContextConstSharedPtr ctx,
                                         const std::string& session_key, const std::string& host) {
  SSL* ssl = ctx->newSsl(session_key, host);
  if (ssl == nullptr) return nullptr;
  std::unique_ptr<Session> s(new Session(ssl));
  s->client_ctx_ = std::move(ctx);
  s->session_key_ = session_key;
  return s;
}

int Session::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<Session*>(SSL_get_ex_data(ssl, sessionExIndex()));
  if (self == nullptr || !self->client_ctx_) return 0;
  self->client_ctx_->storeSession(self->session_key_, session);
  return 1;  // we keep the reference
}

void Session::receive(const char* data, size_t len) {
  if (len > 0) BIO_write(in_, data, static_cast<int>(len));
}

void Session::setError(int ret, std::string_view what) {
  int err = SSL_get_error(ssl_, ret);
  std::string reason;
  if (err == SSL_ERROR_SSL) {
    reason = opensslErrors();
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      reason += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
    }
  } else if (err == SSL_ERROR_SYSCALL) {
    reason = "unexpected end of the TLS stream";
    ERR_clear_error();
  } else {
    reason = "TLS error " + std::to_string(err);
    ERR_clear_error();
  }
  error_ = std::string(what) + ": " + reason;
}

ssize_t Session::read(char* buf, size_t len) {
  if (!error_.empty()) return kError;  // fatal errors stick; the first reason is the useful one
  ERR_clear_error();
  int n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
  if (n > 0) return n;
  int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return kWantMore;
  if (err == SSL_ERROR_ZERO_RETURN) return kClosed;
  setError(n, handshakeDone() ? "TLS read failed" : "TLS handshake failed");
  return kError;
}

int Session::handshake() {
  if (!error_.empty()) return -1;
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return 1;
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  setError(rc, "TLS handshake failed");
  return -1;
}

bool Session::write(const uv_buf_t* bufs, unsigned nbufs) {
  if (!error_.empty()) return false;
  ERR_clear_error();
  auto put = [&](const char* p, size_t n) {
    while (n > 0) {
      int chunk = static_cast<int>(std::min(n, kMaxRecord));
      int rc = SSL_write(ssl_, p, chunk);
      if (rc <= 0) {
        setError(rc, "TLS write failed");
        return false;
      }
      p += rc;
      n -= static_cast<size_t>(rc);
    }
    return true;
  };
  // A header block plus a small body make one record, not several.
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; ++i) total += bufs[i].len;
  if (nbufs > 1 && total <= kMaxRecord) {
    thread_local std::string scratch;
    scratch.clear();
    for (unsigned i = 0; i < nbufs; ++i) scratch.append(bufs[i].base, bufs[i].len);
    return put(scratch.data(), scratch.size());
  }
  for (unsigned i = 0; i < nbufs; ++i) {
    if (!put(bufs[i].base, bufs[i].len)) return false;
  }
  return true;
}

void Session::shutdown() {
  ERR_clear_error();
  if (handshakeDone()) SSL_shutdown(ssl_);
  ERR_clear_error();
}

bool Session::hasOutput() const { return BIO_ctrl_pending(out_) > 0; }

std::string_view Session::output() {
  char* p = nullptr;
  long n = BIO_get_mem_data(out_, &p);
  return n > 0 ? std::string_view(p, static_cast<size_t>(n)) : std::string_view();
}

void Session::clearOutput() { (void)BIO_reset(out_); }

std::string_view Session::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

const PeerIdentity& Session::peer() {
  if (peer_) return *peer_;
  peer_ = std::make_unique<PeerIdentity>();
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return *peer_;
  peer_->verified = SSL_get_verify_result(ssl_) == X509_V_OK;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1) peer_->hash = hex(md, md_len);
  if (BIO* b = BIO_new(BIO_s_mem())) {
    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0) peer_->subject.assign(p, static_cast<size_t>(n));
    BIO_free(b);
  }
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr,
                                                            nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_URI && n->type != GEN_DNS) continue;
      const ASN1_STRING* s = n->type == GEN_URI ? n->d.uniformResourceIdentifier : n->d.dNSName;
      std::string v(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
      (n->type == GEN_URI ? peer_->uris : peer_->dns).push_back(std::move(v));
    }
    GENERAL_NAMES_free(sans);
  }
  return *peer_;
}

}  // namespace remora::tls
