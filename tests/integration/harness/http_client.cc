#include "http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "llhttp.h"

namespace remora::itest {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Parses one response into a Response with llhttp.
class ResponseParser {
 public:
  ResponseParser(Response& out, bool head_request) : out_(out), head_(head_request) {
    llhttp_settings_init(&settings_);
    settings_.on_status = &ResponseParser::onStatus;
    settings_.on_header_field = &ResponseParser::onHeaderField;
    settings_.on_header_field_complete = &ResponseParser::onHeaderFieldComplete;
    settings_.on_header_value = &ResponseParser::onHeaderValue;
    settings_.on_header_value_complete = &ResponseParser::onHeaderValueComplete;
    settings_.on_headers_complete = &ResponseParser::onHeadersComplete;
    settings_.on_body = &ResponseParser::onBody;
    settings_.on_message_complete = &ResponseParser::onMessageComplete;
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
  }

  // Feeds bytes; returns how many were consumed, sets done() when the response is complete.
  size_t feed(const char* data, size_t len) {
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_OK) return len;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      return static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    }
    error_ = std::string("malformed response: ") + llhttp_errno_name(err) + ": " +
             llhttp_get_error_reason(&parser_);
    return len;
  }
  // The server closed the connection: completes a close-delimited body.
  void finish() {
    if (done_ || !error_.empty()) return;
    llhttp_errno_t err = llhttp_finish(&parser_);
    if (err != HPE_OK && err != HPE_PAUSED && !done_) {
      error_ = started_ ? "connection closed before the response was complete"
                        : "connection closed by the server before any response";
    }
  }
  bool done() const { return done_; }
  bool started() const { return started_; }
  const std::string& error() const { return error_; }

 private:
  static ResponseParser& self(llhttp_t* p) { return *static_cast<ResponseParser*>(p->data); }
  void pushHeader() {
    out_.headers.add(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
    field_done_ = false;
  }
  static int onStatus(llhttp_t* p, const char* at, size_t n) {
    self(p).started_ = true;
    self(p).out_.reason.append(at, n);
    return 0;
  }
  static int onHeaderField(llhttp_t* p, const char* at, size_t n) {
    ResponseParser& s = self(p);
    s.started_ = true;
    if (s.field_done_) s.pushHeader();
    s.field_.append(at, n);
    return 0;
  }
  static int onHeaderFieldComplete(llhttp_t* p) {
    self(p).field_done_ = true;
    return 0;
  }
  static int onHeaderValue(llhttp_t* p, const char* at, size_t n) {
    self(p).value_.append(at, n);
    return 0;
  }
  static int onHeaderValueComplete(llhttp_t* p) {
    self(p).pushHeader();
    return 0;
  }
  static int onHeadersComplete(llhttp_t* p) {
    ResponseParser& s = self(p);
    s.started_ = true;
    if (s.field_done_) s.pushHeader();
    s.out_.status = llhttp_get_status_code(p);
    s.out_.http_minor = llhttp_get_http_minor(p);
    s.out_.chunked = (p->flags & F_CHUNKED) != 0;
    // A response to HEAD has no body whatever its headers say.
    return s.head_ ? 1 : 0;
  }
  static int onBody(llhttp_t* p, const char* at, size_t n) {
    self(p).out_.body.append(at, n);
    return 0;
  }
  static int onMessageComplete(llhttp_t* p) {
    ResponseParser& s = self(p);
    int status = llhttp_get_status_code(p);
    if (status >= 100 && status < 200 && status != 101) {
      // Interim response (100 Continue, 103 Early Hints): skip it, the real one follows.
      s.out_.headers = Headers();
      s.out_.reason.clear();
      s.out_.status = 0;
      return 0;
    }
    s.out_.keep_alive = llhttp_should_keep_alive(p) != 0;
    s.done_ = true;
    return HPE_PAUSED;
  }

  Response& out_;
  const bool head_;
  llhttp_settings_t settings_;
  llhttp_t parser_;
  std::string field_;
  std::string value_;
  bool field_done_ = false;
  bool started_ = false;
  bool done_ = false;
  std::string error_;
};

}  // namespace

void Headers::add(std::string name, std::string value) {
  entries_.emplace_back(std::move(name), std::move(value));
}

void Headers::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

size_t Headers::remove(std::string_view name) {
  size_t before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return iequals(e.first, name); }),
                 entries_.end());
  return before - entries_.size();
}

std::optional<std::string> Headers::get(std::string_view name) const {
  for (const auto& [k, v] : entries_) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

size_t Headers::count(std::string_view name) const {
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(),
                                           [&](const Entry& e) { return iequals(e.first, name); }));
}

std::vector<std::string> Headers::all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : entries_) {
    if (iequals(k, name)) out.push_back(v);
  }
  return out;
}

HttpClient::HttpClient(uint16_t port, std::string host, Duration timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  reusable_ = false;
  peer_closed_ = false;
  buf_.clear();
}

bool HttpClient::connect(std::string* error) {
  if (fd_ >= 0) return true;
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = why;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return false;
  };
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return fail(std::string("socket: ") + strerror(errno));
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1) {
    return fail("bad IPv4 address " + host_);
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) return fail(std::string("connect: ") + strerror(errno));
    pollfd pfd{fd_, POLLOUT, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(timeout_.count()));
    if (r <= 0) return fail("connect: timeout");
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(std::string("connect: ") + strerror(err));
  }
  ++connections_opened_;
  reusable_ = true;
  peer_closed_ = false;
  buf_.clear();
  return true;
}

bool HttpClient::sendAll(std::string_view data, Clock::time_point deadline, std::string& error) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        error = "send: timeout";
        return false;
      }
      continue;
    }
    error = std::string("send: ") + strerror(errno);
    return false;
  }
  return true;
}

bool HttpClient::sendRaw(std::string_view bytes) {
  if (!connect()) return false;
  std::string error;
  return sendAll(bytes, Clock::now() + timeout_, error);
}

int HttpClient::fill(Clock::time_point deadline, std::string& error) {
  char tmp[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return 1;
    }
    if (n == 0) {
      peer_closed_ = true;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd pfd{fd_, POLLIN, 0};
      int r = ::poll(&pfd, 1, remainingMs(deadline));
      if (r == 0) {
        error = "timeout waiting for the response";
        return -1;
      }
      continue;
    }
    if (errno == ECONNRESET) {
      peer_closed_ = true;
      error = "connection reset by peer";
      return -1;
    }
    error = std::string("recv: ") + strerror(errno);
    return -1;
  }
}

Response HttpClient::readResponse(bool head_request, std::optional<Duration> timeout) {
  const auto start = Clock::now();
  const auto deadline = start + timeout.value_or(timeout_);
  Response out;
  if (fd_ < 0) {
    out.error = "not connected";
    return out;
  }
  ResponseParser parser(out, head_request);
  for (;;) {
    if (!buf_.empty()) {
      size_t used = parser.feed(buf_.data(), buf_.size());
      buf_.erase(0, used);
      if (!parser.error().empty()) {
        out.error = parser.error();
        break;
      }
      if (parser.done()) break;
    }
    std::string error;
    int r = fill(deadline, error);
    if (r == 0) {
      parser.finish();
      if (!parser.done()) out.error = parser.error();
      break;
    }
    if (r < 0) {
      out.error = error;
      if (error == "connection reset by peer" && parser.started()) {
        out.error = "connection reset before the response was complete";
      }
      break;
    }
  }
  out.complete = parser.done() && out.error.empty();
  out.elapsed = std::chrono::duration_cast<Duration>(Clock::now() - start);
  if (!out.complete || !out.keep_alive) reusable_ = false;
  return out;
}

std::string HttpClient::readRaw(size_t n, Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string error;
  while (fd_ >= 0 && buf_.size() < n && fill(deadline, error) > 0) {
  }
  std::string out;
  out.swap(buf_);
  return out;
}

std::string HttpClient::readUntilClosed(bool& closed, Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string error;
  int r = 1;
  while (fd_ >= 0 && (r = fill(deadline, error)) > 0) {
  }
  closed = r == 0 || peer_closed_;
  std::string out;
  out.swap(buf_);
  return out;
}

bool HttpClient::peerClosedNow() {
  if (fd_ < 0 || peer_closed_) return true;
  char c;
  ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK);
  if (n == 0) return true;
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  return false;
}

Response HttpClient::request(std::string_view method, std::string_view path, const Headers& headers,
                             std::string_view body, const RequestOptions& options) {
  const Duration timeout = options.timeout.value_or(timeout_);
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  // Like browsers and curl: never send on a connection the server has closed in the meantime.
  if (fd_ >= 0 && (!reusable_ || !buf_.empty() || peerClosedNow())) close();
  Response out;
  std::string error;
  if (!connect(&error)) {
    out.error = error;
    return out;
  }

  std::string head;
  head.reserve(256);
  head.append(method).append(" ").append(path).append(" ").append(options.version).append("\r\n");
  if (options.add_host && !headers.has("host")) {
    head += "host: " + host_ + ":" + std::to_string(port_) + "\r\n";
  }
  for (const auto& [k, v] : headers) head += k + ": " + v + "\r\n";
  const bool framed = headers.has("content-length") || headers.has("transfer-encoding");
  if (options.chunked && !framed) {
    head += "transfer-encoding: chunked\r\n";
  } else if (options.add_content_length && !framed &&
             (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")) {
    head += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  head += "\r\n";

  bool sent = true;
  if (options.chunked) {
    std::string wire = head;
    const size_t chunk = std::max<size_t>(options.chunk_size, 1);
    for (size_t off = 0; sent && off < body.size(); off += chunk) {
      size_t n = std::min(chunk, body.size() - off);
      char hex[32];
      std::snprintf(hex, sizeof(hex), "%zx\r\n", n);
      wire += hex;
      wire.append(body.substr(off, n));
      wire += "\r\n";
      if (wire.size() >= 256 * 1024) {
        sent = sendAll(wire, deadline, error);
        wire.clear();
      }
    }
    wire += "0\r\n\r\n";
    if (sent) sent = sendAll(wire, deadline, error);
  } else if (body.size() <= 64 * 1024) {
    sent = sendAll(head + std::string(body), deadline, error);
  } else {
    sent = sendAll(head, deadline, error) && sendAll(body, deadline, error);
  }
  // Even if sending failed, the server may have answered first (e.g. 413/431 and close).
  out = readResponse(method == "HEAD",
                     std::chrono::duration_cast<Duration>(deadline - Clock::now() + Duration(1)));
  if (!sent && !out.ok()) out.error = error + "; then " + out.error;
  out.elapsed = std::chrono::duration_cast<Duration>(Clock::now() - start);
  return out;
}

bool HttpClient::dribble(std::string_view bytes, Duration interval) {
  if (!connect()) return true;
  for (char c : bytes) {
    ssize_t n = ::send(fd_, &c, 1, MSG_NOSIGNAL);
    if (n != 1) return true;
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(interval.count())) > 0) return true;
  }
  return false;
}

bool HttpClient::waitServerClosed(Duration timeout) {
  if (fd_ < 0) return peer_closed_;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (peer_closed_) return true;
    std::string error;
    int r = fill(deadline, error);
    if (r == 0 || peer_closed_) return true;
    if (r < 0) return false;  // timeout or an error other than a reset
  }
}

bool HttpClient::waitReadable(Duration timeout) {
  if (!buf_.empty() || peer_closed_) return true;
  if (fd_ < 0) return false;
  pollfd pfd{fd_, POLLIN, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0;
}

bool HttpClient::shutdownWrite() { return fd_ >= 0 && ::shutdown(fd_, SHUT_WR) == 0; }

}  // namespace remora::itest
