#pragma once

// remoractl's HTTP client: one blocking request per connection (`connection: close`), with a
// deadline. Enough for a CLI; nothing here is on an event loop.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace remora::ctl {

struct HttpResult {
  bool transport_ok = false;  // false: could not connect, timed out, or a malformed answer
  std::string error;          // why transport_ok is false
  int status = 0;
  std::string body;
};

// HTTPS settings: `enabled` with the server verified against `ca_file` (the system store when
// empty) and, for mTLS, a client certificate.
struct TlsOptions {
  bool enabled = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

class BlockingHttpClient {
 public:
  BlockingHttpClient(std::string host, uint16_t port,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000),
                     TlsOptions tls = {})
      : host_(std::move(host)), port_(port), timeout_(timeout), tls_(std::move(tls)) {}

  HttpResult request(const std::string& method, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& headers = {},
                     const std::string& body = {});

 private:
  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  TlsOptions tls_;
};

}  // namespace remora::ctl
