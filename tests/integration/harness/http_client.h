#pragma once

// A blocking HTTP/1.1 test client with timeouts and keep-alive, built on llhttp so it frames
// responses exactly like a real client (Content-Length, chunked, close-delimited, HEAD, 1xx).
// Also sends raw bytes for malformed-request tests and tells when the server closed the
// connection. One client = one connection at a time; use one client per thread.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util.h"

namespace remora::itest {

// Header list that keeps order and duplicates; lookups are case-insensitive.
class Headers {
 public:
  using Entry = std::pair<std::string, std::string>;
  Headers() = default;
  Headers(std::initializer_list<Entry> entries) : entries_(entries) {}

  void add(std::string name, std::string value);
  // Replaces every header of that name with one.
  void set(std::string name, std::string value);
  // Removes every header of that name; returns how many there were.
  size_t remove(std::string_view name);
  // First value of that name.
  std::optional<std::string> get(std::string_view name) const;
  // First value of that name, or "" if absent.
  std::string value(std::string_view name) const { return get(name).value_or(""); }
  bool has(std::string_view name) const { return get(name).has_value(); }
  size_t count(std::string_view name) const;
  std::vector<std::string> all(std::string_view name) const;

  const std::vector<Entry>& entries() const { return entries_; }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<Entry> entries_;
};

struct Response {
  int status = 0;  // 0 when no response head was read
  std::string reason;
  int http_minor = 1;
  Headers headers;
  std::string body;
  bool complete = false;    // the whole message was read
  bool keep_alive = false;  // by HTTP rules the server keeps the connection open
  bool chunked = false;     // the body came with transfer-encoding: chunked
  std::string error;        // transport or framing error; empty when ok()
  Duration elapsed{0};

  bool ok() const { return error.empty() && complete && status != 0; }
  std::string header(std::string_view name) const { return headers.value(name); }
};

struct RequestOptions {
  bool chunked = false;             // send the body with transfer-encoding: chunked
  size_t chunk_size = 16 * 1024;    // size of each chunk when `chunked`
  bool add_host = true;             // add "host: 127.0.0.1:PORT" unless present
  bool add_content_length = true;   // add content-length unless chunked or already present
  std::optional<Duration> timeout;  // overrides the client's default for this request
  std::string version = "HTTP/1.1";
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port, std::string host = "127.0.0.1",
                      Duration timeout = Duration(10000));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads its response; reuses the connection when the previous response
  // allowed it (and the server has not closed it since), otherwise connects anew. Transport
  // errors and timeouts are reported in Response::error, never thrown.
  Response request(std::string_view method, std::string_view path, const Headers& headers = {},
                   std::string_view body = {}, const RequestOptions& options = {});
  Response get(std::string_view path, const Headers& headers = {}) {
    return request("GET", path, headers);
  }
  Response post(std::string_view path, std::string_view body, const Headers& headers = {}) {
    return request("POST", path, headers, body);
  }

  // Raw access, for requests no well-behaved client would send.
  bool connect(std::string* error = nullptr);  // no-op when already connected
  bool sendRaw(std::string_view bytes);
  // Reads one response on the current connection. `head_request`: the response has no body.
  Response readResponse(bool head_request = false, std::optional<Duration> timeout = {});
  // Sends `bytes` one byte every `interval` (a slowloris client). Stops early and returns true as
  // soon as the server sends something or closes; false if every byte went out unanswered.
  bool dribble(std::string_view bytes, Duration interval);
  // True once the server has closed the connection (EOF or RST), waiting up to `timeout`. Bytes
  // that arrive meanwhile are kept for readResponse().
  bool waitServerClosed(Duration timeout = Duration(2000));
  // True once the server has sent something (or closed), waiting up to `timeout`.
  bool waitReadable(Duration timeout);

  // Half-closes the connection (FIN): the server sees EOF but may still answer.
  bool shutdownWrite();

  // After a 101 (the connection is a tunnel): the bytes received past the response, once at
  // least `n` have arrived, or all that did when the server closed or `timeout` passed.
  std::string readRaw(size_t n, Duration timeout = Duration(5000));
  // Every byte received until the server closes (or `timeout` passes: then `closed` is false).
  std::string readUntilClosed(bool& closed, Duration timeout = Duration(5000));

  bool connected() const { return fd_ >= 0; }
  void close();
  // TCP connections this client has opened so far.
  int connectionsOpened() const { return connections_opened_; }
  void setTimeout(Duration timeout) { timeout_ = timeout; }
  uint16_t port() const { return port_; }

 private:
  // Reads into buf_ until `deadline`. 1 = data, 0 = EOF, -1 = error/timeout (sets `error`).
  int fill(Clock::time_point deadline, std::string& error);
  bool sendAll(std::string_view data, Clock::time_point deadline, std::string& error);
  bool peerClosedNow();

  std::string host_;
  uint16_t port_;
  Duration timeout_;
  int fd_ = -1;
  bool reusable_ = false;
  bool peer_closed_ = false;
  int connections_opened_ = 0;
  std::string buf_;  // received, not yet parsed
};

}  // namespace remora::itest
