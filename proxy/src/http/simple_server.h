#pragma once

// A small HTTP/1.1 server on a libuv loop for the admin API and the control plane's REST API.
// Not for the data plane, which streams both ways (see downstream.h).
//
// Three ways to answer a request, all on the loop thread:
//   - buffered: a SimpleHandler returns the whole response (the proxy's admin API);
//   - deferred: an AsyncHandler keeps the Responder and answers later, e.g. once a change is on
//     disk; the connection reads no further request until then, so responses stay in order;
//   - streamed: Responder::startStream() sends the head and then any number of chunks
//     (transfer-encoding: chunked) until finish() or until the client goes away (discovery).

#include <llhttp.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "http/headers.h"
#include "remora/config/config.h"
#include "tls/tls.h"

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

// The body of a streamed response. Every call is a no-op (returning false where it returns
// anything) once the connection is gone, so holders need not track the connection's lifetime.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;

  // Sends the concatenation of `parts` as one chunk. Returns false when the connection is closed
  // or closing. Shared buffers let one payload go to many streams without a copy per stream
  // (e.g. a small per-stream head followed by a large common body).
  virtual bool writeParts(std::vector<std::shared_ptr<const std::string>> parts) = 0;
  bool write(std::shared_ptr<const std::string> data) { return writeParts({std::move(data)}); }
  bool write(std::string data) {
    return write(std::make_shared<const std::string>(std::move(data)));
  }
  // Ends the body (last chunk) and closes the connection once it is written.
  virtual void finish() = 0;
  // Closes the connection now, dropping what was not written yet.
  virtual void abort() = 0;
  virtual bool isOpen() const = 0;
  // Bytes handed to the socket that the kernel has not taken yet: a slow reader shows here.
  virtual size_t bufferedBytes() const = 0;
  // Called once, on the loop and never from inside a call to this stream, when the connection
  // has closed for any reason (client gone, abort(), finish(), server close).
  virtual void setCloseCallback(std::function<void()> callback) = 0;
  // Called whenever bufferedBytes() drops to 0 after a write.
  virtual void setDrainCallback(std::function<void()> callback) = 0;
  // Makes a dead peer (host gone, cable cut) show up as a closed stream within about `timeout`
  // instead of TCP's default of many minutes: TCP keepalive probes while idle, and
  // TCP_USER_TIMEOUT while written data stays unacknowledged.
  virtual void setDeadPeerTimeout(std::chrono::milliseconds timeout) = 0;
  // "ip:port" of the client, for logs.
  virtual std::string peer() const = 0;
};

using ResponseStreamSharedPtr = std::shared_ptr<ResponseStream>;

// Answers one request, once: either respond() or startStream(). Safe to keep after the
// connection is gone (the answer is then dropped).
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void respond(SimpleResponse response) = 0;
  // Sends the status line and headers with transfer-encoding: chunked and hands back the body.
  // The connection serves no further request; it closes when the stream ends.
  virtual ResponseStreamSharedPtr startStream(int status, std::string content_type,
                                              HeaderMap headers = {}) = 0;
  // False once the client has gone or an answer was given.
  virtual bool pending() const = 0;
};

using ResponderSharedPtr = std::shared_ptr<Responder>;

using SimpleHandler = std::function<SimpleResponse(const SimpleRequest&)>;
using AsyncHandler = std::function<void(const SimpleRequest&, const ResponderSharedPtr&)>;

class SimpleHttpServer {
 public:
  SimpleHttpServer(uv_loop_t* loop, SimpleHandler handler, size_t max_body_bytes = 1 << 20);
  SimpleHttpServer(uv_loop_t* loop, AsyncHandler handler, size_t max_body_bytes = 1 << 20);
  ~SimpleHttpServer();

  // Connections accepted from now on speak TLS with this context (null: plain HTTP).
  void setTls(tls::ServerContextConstSharedPtr tls) { tls_ = std::move(tls); }
  // Binds and listens. Returns 0 or a negative uv error.
  int listen(const config::Address& address);
  // The port actually bound (useful after listening on port 0); 0 if not listening.
  uint16_t boundPort() const;
  // Stops listening and closes every connection (streams included).
  void close();
  size_t connectionCount() const { return connections_.size(); }

 private:
  class Connection;
  class ConnectionResponder;
  class ConnectionStream;
  static void onConnection(uv_stream_t* server, int status);
  // Parses a connection's pipelined bytes on the next loop iteration (see resumeParsing()).
  void queueResume(Connection* connection);

  uv_loop_t* loop_;
  AsyncHandler handler_;
  size_t max_body_bytes_;
  uv_tcp_t* listener_ = nullptr;
  tls::ServerContextConstSharedPtr tls_;
  std::unordered_set<Connection*> connections_;
  std::unordered_set<Connection*> resume_queue_;
  uv_idle_t* resume_idle_ = nullptr;
};

// "a=1&b=2" -> value of `key` (no percent-decoding beyond '+' -> ' '); empty if absent.
std::string queryParam(std::string_view query, std::string_view key);

// Decodes %XX escapes (a '+' stays a '+': in a path it is not a space; queryParam() already
// turns it into one); invalid escapes are kept as written.
std::string percentDecode(std::string_view s);

// Escapes every byte but RFC 3986's unreserved characters (ALPHA DIGIT - . _ ~) and those in
// `also_keep` as %XX (upper-case hex), for a path segment or a query value.
std::string percentEncode(std::string_view s, std::string_view also_keep = {});

// The value of a hex digit (either case), or -1.
inline int hexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace remora::http
