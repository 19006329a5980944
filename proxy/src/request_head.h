#pragma once

// A parsed request head. Workers recycle them (Worker::takeRequestHead): reset() keeps the memory
// of the URL, method and header strings for the next request.

#include <cstdint>
#include <string>
#include <string_view>

#include "http/headers.h"

namespace remora {

struct RequestHead {
  std::string method;
  std::string url;
  uint8_t http_major = 1;
  uint8_t http_minor = 1;
  http::HeaderMap headers;
  bool keep_alive = true;
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  // An HTTP/1.1 request without a body that asks to switch protocols (Connection: upgrade and an
  // Upgrade header, WebSocket's handshake): forwarded with its Upgrade, and on a 101 the
  // connection becomes a tunnel between the client and the upstream.
  bool upgrade = false;

  std::string_view path() const {
    std::string_view u = url;
    size_t q = u.find('?');
    return q == std::string_view::npos ? u : u.substr(0, q);
  }
  bool hasBody() const { return chunked || (has_content_length && content_length > 0); }

  // Ready for the next request. Memory is kept for it, unless a large request left more than
  // a typical one needs: then it is freed, so an idle keep-alive connection (or the worker's
  // recycler) does not hold on to an outlier's 60 KiB.
  void reset() {
    constexpr size_t kKeepUrlBytes = 4 * 1024;
    constexpr size_t kKeepHeaderBytes = 16 * 1024;
    method.clear();
    http::clearKeepingUpTo(url, kKeepUrlBytes);
    headers.clearKeepingUpTo(kKeepHeaderBytes);
    http_major = 1;
    http_minor = 1;
    keep_alive = true;
    chunked = false;
    has_content_length = false;
    content_length = 0;
    upgrade = false;
  }
};

}  // namespace remora
