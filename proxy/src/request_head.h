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

  std::string_view path() const {
    std::string_view u = url;
    size_t q = u.find('?');
    return q == std::string_view::npos ? u : u.substr(0, q);
  }
  bool hasBody() const { return chunked || (has_content_length && content_length > 0); }

  void reset() {
    method.clear();
    url.clear();
    http_major = 1;
    http_minor = 1;
    headers.clear();
    keep_alive = true;
    chunked = false;
    has_content_length = false;
    content_length = 0;
  }
};

}  // namespace remora
