#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "body_pattern.h"
#include "llhttp.h"

namespace remora::fake {

namespace {

constexpr size_t kMaxHeaderBytes = 1 << 20;   // larger request heads get 431
constexpr size_t kMaxBodySize = 256u << 20;   // x-fake-body-size cap
constexpr size_t kMaxControlBody = 64 << 10;  // bodies of /__ requests are kept up to this
constexpr size_t kDefaultChunk = 64 << 10;

std::string toLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<long long> parseInt(std::string_view s) {
  s = trim(s);
  long long v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parseDouble(std::string_view s) {
  s = trim(s);
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

// 1xx, 204 and 304 answers never carry a body (RFC 9110 section 6.4.1).
bool statusAllowsBody(int status) { return !(status < 200 || status == 204 || status == 304); }

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { reset(); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void reset() { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string hexDigest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 0xf]);
    }
    reset();
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256Hex(std::string_view data) {
  Sha256 sha;
  sha.update(data.data(), data.size());
  return sha.hexDigest();
}

}  // namespace

// One parsed request. The body itself is not kept (it may be large): only its length and
// SHA-256, plus the first bytes for /__ control requests.
struct Request {
  std::string method;
  std::string url;
  int http_major = 1;
  int http_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // as received
  bool keep_alive = true;
  uint64_t body_length = 0;
  std::string body_sha256;
  std::string small_body;

  std::string path() const { return url.substr(0, url.find('?')); }
  // First header of that name (case-insensitive), if any.
  const std::string* header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), name.size()) == 0) {
        return &v;
      }
    }
    return nullptr;
  }
  bool flag(std::string_view name) const {
    const std::string* v = header(name);
    return v != nullptr &&
           (trim(*v) == "1" || strcasecmp(std::string(trim(*v)).c_str(), "true") == 0);
  }
};

namespace {

// Incremental request parser over llhttp. feed() stops right after each complete request so the
// caller can answer it before the next one is parsed.
class RequestParser {
 public:
  enum class Result { kNeedMore, kComplete, kError };

  explicit RequestParser(int fd) : fd_(fd) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = &RequestParser::onMessageBegin;
    settings_.on_url = &RequestParser::onUrl;
    settings_.on_header_field = &RequestParser::onHeaderField;
    settings_.on_header_field_complete = &RequestParser::onHeaderFieldComplete;
    settings_.on_header_value = &RequestParser::onHeaderValue;
    settings_.on_header_value_complete = &RequestParser::onHeaderValueComplete;
    settings_.on_headers_complete = &RequestParser::onHeadersComplete;
    settings_.on_body = &RequestParser::onBody;
    settings_.on_message_complete = &RequestParser::onMessageComplete;
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
  }

  // Parses up to `len` bytes. On kComplete, `consumed` says how many were used; take() the
  // request, then resume() before feeding the rest.
  Result feed(const char* data, size_t len, size_t& consumed) {
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_OK) {
      consumed = len;
      return Result::kNeedMore;
    }
    if (err == HPE_PAUSED) {
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      return Result::kComplete;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      // After an upgrade request that was answered without a 101: the connection stays HTTP/1.1.
      const size_t skip = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume_after_upgrade(&parser_);
      size_t more = 0;
      Result r = feed(data + skip, len - skip, more);
      consumed = skip + more;
      return r;
    }
    error_ = std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&parser_);
    return Result::kError;
  }
  void resume() { llhttp_resume(&parser_); }
  Request take() { return std::move(req_); }
  bool headersTooLarge() const { return too_large_; }
  const std::string& error() const { return error_; }

 private:
  static RequestParser& self(llhttp_t* p) { return *static_cast<RequestParser*>(p->data); }

  bool countHeaderBytes(size_t n) {
    header_bytes_ += n;
    if (header_bytes_ > kMaxHeaderBytes) {
      too_large_ = true;
      return false;
    }
    return true;
  }
  void pushHeader() {
    req_.headers.emplace_back(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
    field_done_ = false;
  }

  static int onMessageBegin(llhttp_t* p) {
    RequestParser& s = self(p);
    s.req_ = Request{};
    s.field_.clear();
    s.value_.clear();
    s.field_done_ = false;
    s.header_bytes_ = 0;
    s.sha_.reset();
    return 0;
  }
  static int onUrl(llhttp_t* p, const char* at, size_t n) {
    RequestParser& s = self(p);
    if (!s.countHeaderBytes(n)) return -1;
    s.req_.url.append(at, n);
    return 0;
  }
  static int onHeaderField(llhttp_t* p, const char* at, size_t n) {
    RequestParser& s = self(p);
    if (!s.countHeaderBytes(n)) return -1;
    // A field with an empty value may end without a value-complete callback.
    if (s.field_done_) s.pushHeader();
    s.field_.append(at, n);
    return 0;
  }
  static int onHeaderFieldComplete(llhttp_t* p) {
    self(p).field_done_ = true;
    return 0;
  }
  static int onHeaderValue(llhttp_t* p, const char* at, size_t n) {
    RequestParser& s = self(p);
    if (!s.countHeaderBytes(n)) return -1;
    s.value_.append(at, n);
    return 0;
  }
  static int onHeaderValueComplete(llhttp_t* p) {
    self(p).pushHeader();
    return 0;
  }
  static int onHeadersComplete(llhttp_t* p) {
    RequestParser& s = self(p);
    if (s.field_done_) s.pushHeader();
    s.req_.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
    s.req_.http_major = llhttp_get_http_major(p);
    s.req_.http_minor = llhttp_get_http_minor(p);
    const std::string* expect = s.req_.header("expect");
    if (expect != nullptr && strcasecmp(std::string(trim(*expect)).c_str(), "100-continue") == 0) {
      sendAll(s.fd_, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    return 0;
  }
  static int onBody(llhttp_t* p, const char* at, size_t n) {
    RequestParser& s = self(p);
    s.req_.body_length += n;
    s.sha_.update(at, n);
    if (s.req_.url.rfind("/__", 0) == 0 && s.req_.small_body.size() < kMaxControlBody) {
      s.req_.small_body.append(at, std::min(n, kMaxControlBody - s.req_.small_body.size()));
    }
    return 0;
  }
  static int onMessageComplete(llhttp_t* p) {
    RequestParser& s = self(p);
    s.req_.keep_alive = llhttp_should_keep_alive(p) != 0;
    s.req_.body_sha256 = s.sha_.hexDigest();
    return HPE_PAUSED;
  }

  const int fd_;
  llhttp_settings_t settings_;
  llhttp_t parser_;
  Request req_;
  std::string field_;
  std::string value_;
  bool field_done_ = false;
  size_t header_bytes_ = 0;
  bool too_large_ = false;
  Sha256 sha_;
  std::string error_;
};

nlohmann::json modesJson(const Modes& m) {
  return {{"fail_ratio", m.fail_ppm / 1e6},
          {"fail_status", m.fail_status},
          {"status", m.status},
          {"healthz_status", m.healthz_status},
          {"delay_ms", m.delay_ms},
          {"hang", m.hang},
          {"reset", m.reset.empty() ? "none" : m.reset},
          {"close", m.close},
          {"close_silently", m.close_silently}};
}

std::optional<bool> parseBool(std::string_view v) {
  v = trim(v);
  if (v.empty() || v == "1" || v == "true" || v == "on") return true;
  if (v == "0" || v == "false" || v == "off") return false;
  return std::nullopt;
}

// Applies a control body such as "fail_ratio=0.5&status=503" (separators: & ; , whitespace or
// newlines) to a copy of `modes`. All or nothing: on an unknown key or bad value returns the
// reason and leaves `modes` alone.
std::optional<std::string> applyControl(std::string_view body, Modes& modes) {
  Modes m = modes;
  size_t i = 0;
  while (i < body.size()) {
    size_t j = body.find_first_of("&;, \t\r\n", i);
    if (j == std::string_view::npos) j = body.size();
    std::string_view tok = body.substr(i, j - i);
    i = j + 1;
    if (tok.empty()) continue;
    size_t eq = tok.find('=');
    std::string key = toLower(tok.substr(0, eq));
    std::string_view val = eq == std::string_view::npos ? std::string_view() : tok.substr(eq + 1);
    bool has_val = eq != std::string_view::npos;
    auto intVal = [&](int lo, int hi) -> std::optional<int> {
      auto v = parseInt(val);
      if (!v || *v < lo || *v > hi) return std::nullopt;
      return static_cast<int>(*v);
    };
    if (key == "clear" || (key == "reset" && !has_val)) {
      m = Modes{};
    } else if (key == "fail_ratio") {
      auto v = parseDouble(val);
      if (!v || *v < 0 || *v > 1) return "fail_ratio must be in [0, 1]";
      m.fail_ppm = static_cast<uint32_t>(*v * 1e6 + 0.5);
    } else if (key == "fail_status") {
      auto v = intVal(100, 999);
      if (!v) return "fail_status must be a status code";
      m.fail_status = *v;
    } else if (key == "status") {
      auto v = intVal(0, 999);
      if (!v || (*v != 0 && *v < 100)) return "status must be a status code or 0";
      m.status = *v;
    } else if (key == "healthz_status") {
      auto v = intVal(0, 999);
      if (!v || (*v != 0 && *v < 100)) return "healthz_status must be a status code or 0";
      m.healthz_status = *v;
    } else if (key == "delay_ms") {
      auto v = intVal(0, 3600 * 1000);
      if (!v) return "delay_ms must be a non-negative integer";
      m.delay_ms = *v;
    } else if (key == "hang" || key == "close" || key == "close_silently") {
      auto v = parseBool(val);
      if (!v) return key + " must be 0 or 1";
      (key == "hang" ? m.hang : key == "close" ? m.close : m.close_silently) = *v;
    } else if (key == "reset") {
      std::string v(trim(val));
      if (v == "none" || v == "0" || v.empty()) {
        m.reset.clear();
      } else if (v == "headers" || v == "mid-body") {
        m.reset = v;
      } else {
        return "reset must be headers, mid-body or none";
      }
    } else {
      return "unknown control key '" + key + "'";
    }
  }
  modes = m;
  return std::nullopt;
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {}

Server::~Server() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

bool Server::listen(std::string& error) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options_.port);
  if (::inet_pton(AF_INET, options_.address.c_str(), &addr.sin_addr) != 1) {
    error = "invalid IPv4 address '" + options_.address + "'";
    return false;
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    error =
        "bind " + options_.address + ":" + std::to_string(options_.port) + ": " + strerror(errno);
    return false;
  }
  if (::listen(listen_fd_, 512) != 0) {
    error = std::string("listen: ") + strerror(errno);
    return false;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  return true;
}

void Server::start() {
  accept_thread_ = std::thread([this] { acceptLoop(); });
}

void Server::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.exchange(true)) return;
  }
  cv_.notify_all();
  // shutdown() on a listening socket makes a blocked accept() return (EINVAL) on Linux.
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::map<uint64_t, std::unique_ptr<Connection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, c] : conns_) {
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
    }
    conns.swap(conns_);
  }
  for (auto& [id, c] : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void Server::reapFinishedLocked() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->second->done) {
      // The thread has set `done` as its very last action, so this join is immediate.
      if (it->second->thread.joinable()) it->second->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::acceptLoop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) break;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        sleepFor(10);
      }
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    reapFinishedLocked();
    if (stopping_) {
      ::close(fd);
      break;
    }
    auto conn = std::make_unique<Connection>();
    conn->id = next_conn_id_++;
    conn->fd = fd;
    Connection* raw = conn.get();
    try {
      conn->thread = std::thread([this, raw] { serve(*raw); });
    } catch (const std::exception&) {
      ::close(fd);
      continue;
    }
    ++accepted_;
    ++open_;
    conns_.emplace(raw->id, std::move(conn));
  }
}

void Server::closeConnection(Connection& conn, bool abort) {
  std::lock_guard<std::mutex> lock(mu_);
  if (conn.fd < 0) return;
  if (abort) {
    // SO_LINGER with a zero timeout turns close() into a RST.
    linger lg{1, 0};
    ::setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  } else {
    ::shutdown(conn.fd, SHUT_WR);
  }
  ::close(conn.fd);
  conn.fd = -1;
  --open_;
}

bool Server::sleepFor(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_.load(); });
  return !stopping_;
}

void Server::tunnel(int fd, const char* early, size_t early_len) {
  if (early_len > 0 && !sendAll(fd, std::string_view(early, early_len))) return;
  std::vector<char> buf(64 * 1024);
  while (!stopping_) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n == 0) {
      sendAll(fd, "tunnel closed\n");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (!sendAll(fd, std::string_view(buf.data(), static_cast<size_t>(n)))) return;
  }
}

void Server::waitPeerClose(int fd) {
  char buf[4096];
  while (!stopping_) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return;
    if (n < 0 && errno != EINTR) return;
  }
}

bool Server::decideFailure() {
  // Deterministic share: request k (0-based) fails iff floor((k+1)*r) > floor(k*r), so with
  // r = 0.5 every 2nd request fails, with r = 1 all of them.
  uint64_t k = fail_seq_++;
  uint64_t ppm = modes_.fail_ppm;
  return ((k + 1) * ppm) / 1000000 > (k * ppm) / 1000000;
}

void Server::log(const Connection& conn, const Request& req, int status, const char* note) {
  if (options_.quiet) return;
  std::fprintf(stderr, "fake-upstream[%s] conn=%llu %s %s -> %d%s%s\n", options_.name.c_str(),
               static_cast<unsigned long long>(conn.id), req.method.c_str(), req.url.c_str(),
               status, note[0] ? " " : "", note);
}

void Server::serve(Connection& conn) {
  const int fd = conn.fd;
  RequestParser parser(fd);
  std::vector<char> buf(64 * 1024);
  bool abort = false;
  bool running = true;
  while (running && !stopping_) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const char* p = buf.data();
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      size_t used = 0;
      RequestParser::Result r = parser.feed(p, left, used);
      if (r == RequestParser::Result::kNeedMore) break;
      if (r == RequestParser::Result::kError) {
        int status = parser.headersTooLarge() ? 431 : 400;
        std::string body = std::string(reasonPhrase(status)) + ": " + parser.error() + "\n";
        sendAll(fd, "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) +
                        "\r\ncontent-type: text/plain\r\ncontent-length: " +
                        std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + body);
        if (!options_.quiet) {
          std::fprintf(stderr, "fake-upstream[%s] conn=%llu bad request (%s) -> %d\n",
                       options_.name.c_str(), static_cast<unsigned long long>(conn.id),
                       parser.error().c_str(), status);
        }
        running = false;
        break;
      }
      p += used;
      left -= used;
      Next next = Next::kClose;
      try {
        next = handle(conn, parser.take());
      } catch (const std::exception& e) {
        // Only allocation failures can get here; answer nothing more on this connection.
        if (!options_.quiet) std::fprintf(stderr, "fake-upstream: %s\n", e.what());
      }
      if (next == Next::kTunnel) {
        tunnel(fd, p, left);
        running = false;
        break;
      }
      if (next != Next::kKeepAlive) {
        abort = next == Next::kAbort;
        running = false;
        break;
      }
      parser.resume();
    }
  }
  closeConnection(conn, abort);
  std::lock_guard<std::mutex> lock(mu_);
  conn.done = true;
}

Server::Next Server::handle(Connection& conn, const Request& req) {
  const std::string path = req.path();
  if (path.rfind("/__", 0) == 0) return handleControl(conn, req);

  const bool healthz = path == "/healthz";
  Modes m;
  bool fail = false;
  uint64_t conn_requests = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_;
    if (healthz) ++healthz_;
    if (conn.counted_epoch != epoch_) {
      conn.counted_epoch = epoch_;
      ++connections_;
    }
    ++active_;
    m = modes_;
    if (!healthz) fail = decideFailure();
    conn_requests = ++conn.requests;
  }
  struct ActiveGuard {
    Server& s;
    ~ActiveGuard() {
      std::lock_guard<std::mutex> lock(s.mu_);
      --s.active_;
    }
  } guard{*this};

  const int fd = conn.fd;
  // Delay, hang and reset come first: they model a server that is slow or broken before it
  // decides anything about the answer.
  bool hang = req.flag("x-fake-hang") || m.hang;
  if (hang) {
    log(conn, req, 0, "(hang)");
    waitPeerClose(fd);
    return Next::kClose;
  }
  int delay_ms = m.delay_ms;
  if (const std::string* v = req.header("x-fake-delay-ms")) {
    auto d = parseInt(*v);
    if (d && *d >= 0) delay_ms = static_cast<int>(std::min<long long>(*d, 3600 * 1000));
  }
  if (delay_ms > 0 && !sleepFor(delay_ms)) return Next::kClose;

  // An upgrade (Connection: upgrade and an Upgrade header) is accepted: 101, then an echo tunnel.
  const std::string* upgrade = req.header("upgrade");
  const std::string* connection = req.header("connection");
  if (upgrade != nullptr && connection != nullptr &&
      toLower(*connection).find("upgrade") != std::string::npos &&
      !req.flag("x-fake-upgrade-refuse")) {
    std::string head = "HTTP/1.1 101 Switching Protocols\r\n";
    if (!req.flag("x-fake-upgrade-no-header")) head += "upgrade: " + *upgrade + "\r\n";
    head += "connection: Upgrade\r\nx-upstream-name: " + options_.name + "\r\n\r\n";
    if (const std::string* g = req.header("x-fake-upgrade-greeting")) head += *g;
    log(conn, req, 101, "(upgrade)");
    if (!sendAll(fd, head)) return Next::kClose;
    return req.flag("x-fake-upgrade-close") ? Next::kClose : Next::kTunnel;
  }

  std::string reset = m.reset;
  if (const std::string* v = req.header("x-fake-reset")) reset = toLower(trim(*v));
  if (reset == "headers" || reset == "before-headers" || reset == "1") {
    log(conn, req, 0, "(reset before headers)");
    return Next::kAbort;
  }

  int status = 200;
  if (healthz) {
    status = m.healthz_status != 0 ? m.healthz_status : (m.status != 0 ? m.status : 200);
  } else if (const std::string* v = req.header("x-fake-status")) {
    auto s = parseInt(*v);
    status = (s && *s >= 100 && *s <= 999) ? static_cast<int>(*s) : 400;
  } else if (m.status != 0) {
    status = m.status;
  } else if (fail) {
    status = m.fail_status;
  }

  // The body: a deterministic pattern, "ok" for health checks, else a JSON echo of the request.
  std::string body;
  std::string content_type = "application/json";
  bool sized = false;
  if (healthz) {
    body = "ok";
    content_type = "text/plain";
  } else if (const std::string* v = req.header("x-fake-body-size")) {
    auto size = parseInt(*v);
    if (!size || *size < 0 || static_cast<size_t>(*size) > kMaxBodySize) {
      status = 400;
      body = "bad x-fake-body-size\n";
      content_type = "text/plain";
    } else {
      body = bodyPattern(static_cast<size_t>(*size));
      content_type = "application/octet-stream";
      sized = true;
    }
  } else {
    nlohmann::json headers = nlohmann::json::object();
    nlohmann::json header_list = nlohmann::json::array();
    for (const auto& [k, v] : req.headers) {
      std::string lk = toLower(k);
      if (headers.contains(lk)) {
        headers[lk] = headers[lk].get<std::string>() + ", " + v;
      } else {
        headers[lk] = v;
      }
      header_list.push_back({k, v});
    }
    size_t q = req.url.find('?');
    nlohmann::json echo = {
        {"upstream", options_.name},
        {"method", req.method},
        {"url", req.url},
        {"path", path},
        {"query", q == std::string::npos ? "" : req.url.substr(q + 1)},
        {"http_version", std::to_string(req.http_major) + "." + std::to_string(req.http_minor)},
        {"headers", headers},
        {"header_list", header_list},
        {"body_length", req.body_length},
        {"body_sha256", req.body_sha256},
        {"connection_id", conn.id},
        {"connection_requests", conn_requests},
    };
    // Header values are arbitrary bytes; never let invalid UTF-8 throw.
    body = echo.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  if (!statusAllowsBody(status)) body.clear();

  const bool chunked = req.flag("x-fake-chunked");
  const bool no_length = req.flag("x-fake-no-length");
  const bool close = no_length || req.flag("x-fake-close") || m.close || !req.keep_alive;
  const bool close_silently = req.flag("x-fake-close-silently") || m.close_silently;
  const bool head = req.method == "HEAD";
  // Bytes sent right behind the response, in the same write (a broken or desynced server).
  const std::string* trailing_value = req.header("x-fake-trailing-bytes");
  std::string trailing;  // "\r\n" written as the four characters stands for CRLF
  if (trailing_value != nullptr) {
    for (size_t i = 0; i < trailing_value->size(); ++i) {
      if (trailing_value->compare(i, 4, "\\r\\n") == 0) {
        trailing += "\r\n";
        i += 3;
      } else {
        trailing += (*trailing_value)[i];
      }
    }
  }

  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
  h += "content-type: " + content_type + "\r\n";
  h += "x-upstream-name: " + options_.name + "\r\n";
  h += "x-body-length: " + std::to_string(req.body_length) + "\r\n";
  h += "x-body-sha256: " + req.body_sha256 + "\r\n";
  h += "x-connection-id: " + std::to_string(conn.id) + "\r\n";
  h += "x-connection-requests: " + std::to_string(conn_requests) + "\r\n";
  if (sized) h += "x-response-sha256: " + sha256Hex(body) + "\r\n";
  for (const auto& [k, v] : req.headers) {
    // Extra response lines, as given: the tests of what a proxy forwards from an upstream.
    if (strcasecmp(k.c_str(), "x-fake-response-header") == 0) h += v + "\r\n";
  }
  if (!statusAllowsBody(status)) {
    // No framing headers at all.
  } else if (chunked && !no_length) {
    h += "transfer-encoding: chunked\r\n";
  } else if (!no_length) {
    h += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  if (close) {
    h += "connection: close\r\n";
  } else if (req.http_major == 1 && req.http_minor == 0) {
    h += "connection: keep-alive\r\n";
  }
  h += "\r\n";

  const bool mid_body_reset = reset == "mid-body";
  size_t limit = mid_body_reset ? body.size() / 2 : body.size();
  if (head || !statusAllowsBody(status)) limit = 0;
  log(conn, req, status, mid_body_reset ? "(reset mid-body)" : "");

  bool ok = true;
  if (chunked && !no_length && statusAllowsBody(status) && !head) {
    ok = sendAll(fd, h);
    size_t chunk = kDefaultChunk;
    if (const std::string* v = req.header("x-fake-chunk-size")) {
      auto c = parseInt(*v);
      if (c && *c > 0) chunk = static_cast<size_t>(*c);
    } else {
      // "Several chunks" even for small bodies: at least 4 when the body allows it.
      chunk = std::clamp<size_t>((body.size() + 3) / 4, 1, kDefaultChunk);
    }
    char hex[32];
    for (size_t off = 0; ok && off < limit; off += chunk) {
      size_t n = std::min(chunk, limit - off);
      std::snprintf(hex, sizeof(hex), "%zx\r\n", n);
      std::string piece = hex;
      piece.append(body, off, n);
      piece += "\r\n";
      ok = sendAll(fd, piece);
    }
    if (ok && !mid_body_reset) ok = sendAll(fd, "0\r\n\r\n" + trailing);
  } else {
    if (limit <= 64 * 1024) {
      h.append(body, 0, limit);
      ok = sendAll(fd, h + trailing);
    } else {
      ok = sendAll(fd, h) && sendAll(fd, std::string_view(body).substr(0, limit));
    }
  }
  if (mid_body_reset) return Next::kAbort;
  if (!ok || close || close_silently) return Next::kClose;
  return Next::kKeepAlive;
}

Server::Next Server::handleControl(Connection& conn, const Request& req) {
  const std::string path = req.path();
  int status = 200;
  nlohmann::json out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (path == "/__stats") {
      out = {{"connections", connections_}, {"requests", requests_},     {"active", active_},
             {"accepted", accepted_},       {"open_connections", open_}, {"healthz", healthz_},
             {"name", options_.name}};
    } else if (path == "/__reset_stats" && req.method == "POST") {
      ++epoch_;
      connections_ = requests_ = accepted_ = healthz_ = 0;
      fail_seq_ = 0;
      out = {{"ok", true}};
    } else if (path == "/__control" && req.method == "POST") {
      if (auto err = applyControl(req.small_body, modes_)) {
        status = 400;
        out = {{"error", *err}};
      } else {
        fail_seq_ = 0;
        out = modesJson(modes_);
      }
    } else if (path == "/__control" && req.method == "GET") {
      out = modesJson(modes_);
    } else {
      status = 404;
      out = {{"error", "unknown control path " + path}};
    }
  }
  std::string body = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string resp = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) +
                     "\r\ncontent-type: application/json\r\nx-upstream-name: " + options_.name +
                     "\r\ncontent-length: " + std::to_string(body.size()) + "\r\n" +
                     (req.keep_alive ? "" : "connection: close\r\n") + "\r\n" + body;
  if (!sendAll(conn.fd, resp) || !req.keep_alive) return Next::kClose;
  return Next::kKeepAlive;
}

}  // namespace remora::fake
