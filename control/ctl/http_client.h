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

class BlockingHttpClient {
 public:
  BlockingHttpClient(std::string host, uint16_t port,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000))
      : host_(std::move(host)), port_(port), timeout_(timeout) {}

  HttpResult request(const std::string& method, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& headers = {},
                     const std::string& body = {});

 private:
  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
};

}  // namespace remora::ctl
