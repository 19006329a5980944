#pragma once

// A blocking HTTPS/1.1 client for integration tests: OpenSSL on a socket, with optional client
// certificate, SNI and CA. Keeps its connection alive between requests and can resume its TLS
// session on a new connection (resume()).

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http_client.h"
#include "util.h"

namespace remora::itest {

struct TlsClientOptions {
  std::string ca_file;    // verify the server against it (empty: no verification)
  std::string cert_file;  // client certificate (mTLS)
  std::string key_file;
  std::string sni;        // server name sent and verified (when ca_file is set)
};

class TlsClient {
 public:
  TlsClient(uint16_t port, TlsClientOptions options, Duration timeout = Duration(10000));
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // Connects and completes the handshake. False with error() set (e.g. refused client cert).
  bool connect();
  // One request on the open connection (connects first if needed). `raw_headers` are extra
  // "name: value\r\n" lines. Reads a Content-Length or chunked response.
  Response request(std::string_view method, std::string_view path,
                   std::string_view raw_headers = "");
  Response get(std::string_view path, std::string_view raw_headers = "") {
    return request("GET", path, raw_headers);
  }
  // Closes the connection (keeping the TLS session for the next connect()).
  void close();

  bool connected() const { return ssl_ != nullptr; }
  bool resumed() const;
  // The server certificate's subject CN, "" if none.
  std::string peerCommonName() const;
  const std::string& error() const { return error_; }

 private:
  bool readMore(std::string& buf);

  uint16_t port_;
  TlsClientOptions options_;
  Duration timeout_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  SSL_SESSION* session_ = nullptr;
  int fd_ = -1;
  std::string error_;
};

}  // namespace remora::itest
