#pragma once

// TLS over memory BIOs, for every connection Remora accepts or opens (listeners, upstream
// clusters, health checks, the admin/control HTTP server and the discovery client).
//
// OpenSSL never touches a socket: the connection's libuv read callback hands ciphertext to
// Session::receive(), pulls plaintext with Session::read(), and StreamWriter sends what the
// session produced (handshake records, encrypted data, alerts). This keeps one event loop design
// for plain and TLS connections (h2o and HAProxy do the same) and lets tests drive a client and a
// server Session against each other in memory.
//
// Contexts are immutable once built and shared by snapshots. ContextCache hands out the same
// context for the same settings *and file contents*, so a reload or a control-plane push that
// does not change a certificate keeps pools, session caches and ticket keys, while a rotated file
// gives a new context (new connections use it; established ones keep theirs).

#include <openssl/ssl.h>
#include <sys/types.h>
#include <uv.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "remora/config/config.h"

namespace remora::tls {

// What a verified peer certificate says, for x-forwarded-client-cert and route matching.
struct PeerIdentity {
  bool verified = false;          // a certificate was presented and verified against the CA
  std::string subject;            // RFC 2253 form
  std::string hash;               // hex SHA-256 of the DER certificate
  std::vector<std::string> uris;  // SAN URIs (e.g. spiffe://...)
  std::vector<std::string> dns;   // SAN DNS names

  // Envoy's x-forwarded-client-cert element: Hash=..;Subject="..";URI=..;DNS=..
  std::string xfccValue() const;
  // True if `pattern` equals one of the SAN URIs or DNS names; a trailing '*' matches a prefix.
  bool matches(std::string_view pattern) const;
};

class ServerContext {
 public:
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A new server-side SSL (accept state) on the default certificate; SNI may switch it.
  SSL* newSsl() const;
  bool requiresClientCert() const { return require_client_cert_; }
  const std::string& digest() const { return digest_; }
  // Names (SAN DNS, else CN) of each certificate, the default first; for logs and tests.
  std::vector<std::vector<std::string>> certificateNames() const;

 private:
  friend class ContextCache;
  struct Cert {
    SSL_CTX* ctx = nullptr;
    std::vector<std::string> names;
  };
  ServerContext() = default;
  static int onServerName(SSL* ssl, int* alert, void* arg);
  const Cert* certFor(std::string_view server_name) const;

  std::vector<Cert> certs_;  // [0] is the default
  bool require_client_cert_ = false;
  std::string digest_;
};
using ServerContextConstSharedPtr = std::shared_ptr<const ServerContext>;

class ClientContext {
 public:
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // A new client-side SSL for `host` (the endpoint's host as configured): SNI and the name the
  // certificate must carry are `sni` when set, else the host (an IP host is checked as an IP and
  // sends no SNI). Resumes the last session of `session_key` when there is one.
  SSL* newSsl(const std::string& session_key, const std::string& host) const;
  const std::string& digest() const { return digest_; }
  // Called by Session when the server sends a new session (ticket).
  void storeSession(const std::string& session_key, SSL_SESSION* session) const;

 private:
  friend class ContextCache;
  ClientContext() = default;

  SSL_CTX* ctx_ = nullptr;
  std::string sni_;
  std::string digest_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, SSL_SESSION*> sessions_;  // owned references
};
using ClientContextConstSharedPtr = std::shared_ptr<const ClientContext>;

// Builds contexts from config, reading the files now. Thread-safe. Errors name the file and the
// OpenSSL reason ("cannot load key_file /x: no such file", "key does not match certificate").
class ContextCache {
 public:
  ServerContextConstSharedPtr server(const config::ListenerTls& cfg, std::string& error);
  ClientContextConstSharedPtr client(const config::UpstreamTls& cfg, std::string& error);

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<const ServerContext>> servers_;
  std::map<std::string, std::weak_ptr<const ClientContext>> clients_;
};

// One TLS connection's state machine.
class Session {
 public:
  // read() results besides a byte count.
  static constexpr ssize_t kWantMore = 0;   // nothing (more) to read until more bytes arrive
  static constexpr ssize_t kClosed = -1;    // the peer sent close_notify
  static constexpr ssize_t kError = -2;     // fatal; see error()

  static std::unique_ptr<Session> server(ServerContextConstSharedPtr ctx);
  static std::unique_ptr<Session> client(ClientContextConstSharedPtr ctx,
                                         const std::string& session_key, const std::string& host);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Ciphertext from the peer.
  void receive(const char* data, size_t len);
  // Decrypted bytes into `buf`: > 0 bytes, or kWantMore / kClosed / kError. Drives the handshake.
  ssize_t read(char* buf, size_t len);
  // Client side: starts or continues the handshake. 1 done, 0 needs the peer's answer (send
  // output first), -1 failed (error()).
  int handshake();
  bool handshakeDone() const { return SSL_is_init_finished(ssl_) == 1; }
  // Encrypts `bufs` (small buffers are coalesced into one record). False on error.
  bool write(const uv_buf_t* bufs, unsigned nbufs);
  // Queues close_notify.
  void shutdown();

  // TLS records waiting to be sent to the peer.
  bool hasOutput() const;
  // Moves the pending records out as one buffer view; valid until the next call on the session.
  std::string_view output();
  void clearOutput();

  // Why the last call failed (OpenSSL reason and, for certificates, the verify result).
  const std::string& error() const { return error_; }
  // The verified peer certificate (valid after the handshake; computed once).
  const PeerIdentity& peer();
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }
  std::string_view version() const { return SSL_get_version(ssl_); }
  std::string_view alpn() const;
  // OpenSSL's new-session callback of client contexts (stores the session for resumption).
  static int onNewSession(SSL* ssl, SSL_SESSION* session);

 private:
  explicit Session(SSL* ssl);
  void setError(int ret, std::string_view what);

  SSL* ssl_;
  BIO* in_;   // ciphertext from the peer (owned by ssl_)
  BIO* out_;  // ciphertext to the peer (owned by ssl_)
  ClientContextConstSharedPtr client_ctx_;  // keeps the session cache alive
  ServerContextConstSharedPtr server_ctx_;
  std::string session_key_;
  std::string error_;
  std::unique_ptr<PeerIdentity> peer_;
};
using SessionPtr = std::unique_ptr<Session>;

}  // namespace remora::tls
