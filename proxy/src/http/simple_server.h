#pragma once

// A small buffered HTTP/1.1 server on a libuv loop for the admin API (and the control plane's
// REST API): whole requests in, whole responses out, keep-alive. Not for the data plane, which
// streams (see downstream.h).

#include <llhttp.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>

#include "http/headers.h"
#include "remora/config/config.h"

namespace remora::http {

struct SimpleRequest {
  std::string method;
  std::string url;
  std::string path;   // url without the query string
  std::string query;  // after '?', without it
  HeaderMap headers;
  std::string body;
};

struct SimpleResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  HeaderMap headers;

  static SimpleResponse text(int status, std::string body) {
    SimpleResponse r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  static SimpleResponse json(int status, std::string body) {
    SimpleResponse r;
    r.status = status;
    r.content_type = "application/json";
    r.body = std::move(body);
    return r;
  }
};

using SimpleHandler = std::function<SimpleResponse(const SimpleRequest&)>;

class SimpleHttpServer {
 public:
  SimpleHttpServer(uv_loop_t* loop, SimpleHandler handler, size_t max_body_bytes = 1 << 20);
  ~SimpleHttpServer();

  // Binds and listens. Returns 0 or a negative uv error.
  int listen(const config::Address& address);
  // Stops listening and closes every connection.
  void close();

 private:
  class Connection;
  static void onConnection(uv_stream_t* server, int status);

  uv_loop_t* loop_;
  SimpleHandler handler_;
  size_t max_body_bytes_;
  uv_tcp_t* listener_ = nullptr;
  std::unordered_set<Connection*> connections_;
};

// "a=1&b=2" -> value of `key` (no percent-decoding beyond '+' -> ' '); empty if absent.
std::string queryParam(std::string_view query, std::string_view key);

}  // namespace remora::http
