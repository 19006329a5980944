// libFuzzer target: bytes from a client through the proxy's real request path.
//
// Seam: the whole data plane of one worker, not just the parser. The fuzzer process holds a real
// Worker (its libuv loop driven from the fuzzer thread instead of the worker thread), a Snapshot
// built from a fixed YAML config, a listening socket on 127.0.0.1 and an in-process upstream on
// the same loop. Each input opens one loopback TCP connection, so DownstreamConnection (llhttp,
// limits, timers, pipelining, lingering close), ActiveStream (routing, filters, retries, fallbacks,
// body streaming, local replies), the upstream pool and UpstreamConnection (response parsing) all
// run exactly as in production; only the upstream is a scripted one.
//
// Input layout:
//   byte 0   how the request bytes are cut into writes (the proxy must parse incrementally), how
//            the client ends (half-close and read the answer, or reset right after sending), and
//            whether it reads through a tiny receive window (the proxy's write queue, flow control)
//   byte 1   what the upstream answers (see UpstreamMode)
//   rest     the bytes the client sends; if they contain kUpstreamMarker, what follows it is the
//            upstream's raw response in UpstreamMode::Raw (and is never sent by the client)
//
// Checks, beyond ASan/UBSan/LSan:
//   - what the proxy forwards upstream is one well-formed HTTP/1.1 request per message: llhttp
//     accepts it, header names are tokens, values hold no CR/LF/NUL, exactly one framing header at
//     most and never both, exactly one host and a bare authority in it, an origin-form target
//     (request smuggling oracle);
//   - what the client receives parses as HTTP/1.1 responses with one unambiguous framing, the
//     proxy's own connection header only, no other hop-by-hop header, at most one
//     x-remora-attempts (response smuggling oracle; ClientChecker, not for inputs with a HEAD);
//     a 101 (UpstreamMode::Upgrade, or Raw) only with its upgrade and connection: upgrade, after
//     which the bytes are the tunnel's;
//   - every connection ends: the proxy answers and closes within a deadline;
//   - after each input every gauge is back to zero: downstream and upstream connections, requests
//     in flight per cluster and per endpoint, the clusters' resource limits (leak oracle).
// A failed check prints the reason and aborts, so libFuzzer saves the input.

#include <arpa/inet.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "access_log.h"
#include "remora/config/config.h"
#include "runtime.h"
#include "snapshot.h"
#include "stats.h"
#include "worker.h"

namespace {

using namespace remora;
using namespace std::literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kUpstreamMarker = "\x00UPSTREAM\x00"sv;
// A connection that has not ended this long after the client stopped sending is a hang: the
// config's timeouts are all far shorter.
constexpr auto kConnectionDeadline = std::chrono::seconds(5);

const char* g_input = nullptr;  // the current input, for failure reports
size_t g_input_size = 0;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzzer: %s\n", what.c_str());
  if (g_input != nullptr) {
    std::fprintf(stderr, "--- input (%zu bytes, C-escaped) ---\n", g_input_size);
    for (size_t i = 0; i < g_input_size; ++i) {
      unsigned char c = static_cast<unsigned char>(g_input[i]);
      if (c == '\n') {
        std::fputs("\\n\n", stderr);
      } else if (c >= 0x20 && c < 0x7f && c != '\\') {
        std::fputc(c, stderr);
      } else {
        std::fprintf(stderr, "\\x%02x", c);
      }
    }
    std::fputc('\n', stderr);
  }
  std::abort();
}

enum class UpstreamMode : uint8_t {
  Ok,             // 200 with content-length, keep-alive
  Chunked,        // 200 chunked
  CloseDelimited, // 200 without length, then close
  ServiceDown,    // 503 (retried on /retry, fallback on /fb)
  ContinueThen204,// 100 Continue, then 204
  ResetOnHead,    // close as soon as the request head arrived
  Hang,           // never answer (route timeout)
  Raw,            // the input's bytes after kUpstreamMarker, then close
  NotModified,    // 304 with a content-length and no body
  Large,          // 512 KiB body: write queue and flow control towards the client
  Upgrade,        // 101 to an upgrade request, then an echo tunnel; others as Ok
  kCount
};

bool isTokenChar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// --- What the client receives -----------------------------------------------------------------

// Response smuggling oracle: whatever the upstream answered, what reaches the client must parse
// as HTTP/1.1 responses with token header names, one unambiguous framing, the proxy's own
// connection header only, no other hop-by-hop header of the upstream's, at most one
// x-remora-attempts. (Skipped for inputs with a HEAD request: the body of a response to HEAD is
// absent whatever its content-length says, which a parser that did not see the request cannot
// know.)
class ClientChecker {
 public:
  ClientChecker() {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) {
      auto* k = static_cast<ClientChecker*>(p->data);
      k->headers_.clear();
      k->field_.clear();
      k->value_.clear();
      return 0;
    };
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      static_cast<ClientChecker*>(p->data)->field_.append(at, len);
      return 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      static_cast<ClientChecker*>(p->data)->value_.append(at, len);
      return 0;
    };
    settings_.on_header_value_complete = [](llhttp_t* p) {
      auto* k = static_cast<ClientChecker*>(p->data);
      k->headers_.emplace_back(std::move(k->field_), std::move(k->value_));
      k->field_.clear();
      k->value_.clear();
      return 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      static_cast<ClientChecker*>(p->data)->checkHead(p->status_code);
      // 1xx, 204 and 304 never have a body, whatever content-length says (RFC 9110 6.4.1); 1
      // tells llhttp so, as UpstreamConnection does.
      int status = p->status_code;
      return status < 200 || status == 204 || status == 304 ? 1 : 0;
    };
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
  }

  void feed(const char* data, size_t len) {
    if (len == 0 || tunnel_) return;  // after a 101 the bytes are the tunnel's, not HTTP
    if (received_.size() < 4096) received_.append(data, std::min<size_t>(len, 4096));
    llhttp_errno_t rc = llhttp_execute(&parser_, data, len);
    if (rc == HPE_PAUSED_UPGRADE) {
      tunnel_ = true;
      return;
    }
    if (rc != HPE_OK) {
      fail(std::string("the client received bytes that are not an HTTP/1.1 response: ") +
           llhttp_errno_name(rc) + " (" + llhttp_get_error_reason(&parser_) +
           "); the first bytes received:\n" + received_);
    }
  }

 private:
  void checkHead(int status) {
    if (status < 100 || status > 599) {
      fail("status " + std::to_string(status) + " sent to the client (outside 100-599)");
    }
    if (status < 200 && status != 101) return;  // the proxy's own 100 Continue
    // A relayed upgrade (101) is the one response that says connection: upgrade and keeps
    // Upgrade, and it has no framing: the tunnel's bytes follow.
    const bool switching = status == 101;
    int content_length = 0, transfer_encoding = 0, connection = 0, attempts = 0, upgrade = 0;
    for (auto& [name, value] : headers_) {
      if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
        fail("response header name sent to the client is not a token: \"" + name + "\"");
      }
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (name == "content-length") ++content_length;
      if (name == "transfer-encoding") {
        ++transfer_encoding;
        if (value != "chunked") fail("transfer-encoding sent to the client is \"" + value + "\"");
      }
      if (name == "connection") {
        ++connection;
        if (switching ? value != "upgrade" : value != "close" && value != "keep-alive") {
          fail("connection header sent to the client with a " + std::to_string(status) +
               " is \"" + value + "\", not the proxy's own");
        }
      }
      if (name == "x-remora-attempts") ++attempts;
      if (name == "upgrade") ++upgrade;
      for (const char* hop : {"keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                              "proxy-authenticate", "proxy-authorization"}) {
        if (name == hop && !(switching && name == "upgrade")) {
          fail("hop-by-hop header \"" + name + "\" reached the client");
        }
      }
    }
    if (switching && (upgrade == 0 || connection != 1 || content_length || transfer_encoding)) {
      fail("a 101 sent to the client without its upgrade and connection: upgrade, or with "
           "framing headers");
    }
    if (content_length > 1 || transfer_encoding > 1 || (content_length && transfer_encoding) ||
        connection > 1 || attempts > 1) {
      fail("ambiguous response head sent to the client (content-length x" +
           std::to_string(content_length) + ", transfer-encoding x" +
           std::to_string(transfer_encoding) + ", connection x" + std::to_string(connection) +
           ", x-remora-attempts x" + std::to_string(attempts) + ")");
    }
  }

  llhttp_t parser_;
  llhttp_settings_t settings_;
  std::string field_;
  std::string value_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string received_;  // the start of it, for the failure message
  bool tunnel_ = false;    // a 101 was received: the rest is not HTTP
};

// --- The in-process upstream ----------------------------------------------------------------

class Upstream {
 public:
  explicit Upstream(uv_loop_t* loop) : loop_(loop) {
    uv_tcp_init(loop_, &server_);
    server_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&server_, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 1024, &Upstream::onConnection) != 0) {
      fail("cannot start the in-process upstream");
    }
    sockaddr_storage ss{};
    int len = sizeof(ss);
    uv_tcp_getsockname(&server_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }

  uint16_t port() const { return port_; }
  void setMode(UpstreamMode mode, std::string raw) {
    mode_ = mode;
    raw_ = std::move(raw);
  }
  size_t openConnections() const { return conns_.size(); }
  void closeAll() {
    std::vector<Conn*> all(conns_.begin(), conns_.end());
    for (Conn* c : all) c->close();
  }

 private:
  struct Conn {
    Upstream* up = nullptr;
    uv_tcp_t tcp;
    llhttp_t parser;
    llhttp_settings_t settings;
    std::string field;
    std::string value;
    bool in_value = false;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string url;
    bool closing = false;
    bool answered_close = false;
    bool tunnel = false;  // answered 101: echoes raw bytes from here on

    void close() {
      if (closing) return;
      closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) {
        auto* c = static_cast<Conn*>(h->data);
        c->up->conns_.erase(c);
        delete c;
      });
    }
    void write(std::string data) {
      auto* req = new WriteReq{{}, std::move(data)};
      req->req.data = req;
      uv_buf_t b = uv_buf_init(req->data.data(), static_cast<unsigned>(req->data.size()));
      if (uv_write(&req->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                   [](uv_write_t* w, int) { delete static_cast<WriteReq*>(w->data); }) != 0) {
        delete req;
      }
    }
    void commitHeader() {
      headers.emplace_back(std::move(field), std::move(value));
      field.clear();
      value.clear();
      in_value = false;
    }
  };
  struct WriteReq {
    uv_write_t req;
    std::string data;
  };

  static Conn* conn(llhttp_t* p) { return static_cast<Conn*>(p->data); }

  static void onConnection(uv_stream_t* server, int status) {
    auto* self = static_cast<Upstream*>(server->data);
    if (status < 0) return;
    auto* c = new Conn();
    c->up = self;
    uv_tcp_init(self->loop_, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
               [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
      return;
    }
    self->conns_.insert(c);
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = [](llhttp_t* p) {
      Conn* k = conn(p);
      k->headers.clear();
      k->url.clear();
      k->field.clear();
      k->value.clear();
      k->in_value = false;
      return 0;
    };
    c->settings.on_url = [](llhttp_t* p, const char* at, size_t len) {
      conn(p)->url.append(at, len);
      return 0;
    };
    c->settings.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      Conn* k = conn(p);
      if (k->in_value) k->commitHeader();
      k->field.append(at, len);
      return 0;
    };
    c->settings.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      Conn* k = conn(p);
      k->in_value = true;
      k->value.append(at, len);
      return 0;
    };
    c->settings.on_headers_complete = [](llhttp_t* p) {
      Conn* k = conn(p);
      if (k->closing) return static_cast<int>(HPE_PAUSED);
      if (k->in_value || !k->field.empty()) k->commitHeader();
      k->up->checkForwardedHead(*k, p);
      if (k->up->mode_ == UpstreamMode::ResetOnHead) {
        k->close();
        return static_cast<int>(HPE_PAUSED);
      }
      return 0;
    };
    c->settings.on_message_complete = [](llhttp_t* p) {
      Conn* k = conn(p);
      if (k->closing) return static_cast<int>(HPE_PAUSED);
      k->up->answer(*k, p->method == HTTP_HEAD, p->upgrade != 0);
      return k->closing ? static_cast<int>(HPE_PAUSED) : 0;
    };
    llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
    c->parser.data = c;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char storage[64 * 1024];
          *buf = uv_buf_init(storage, sizeof(storage));
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          Conn* k = static_cast<Conn*>(s->data);
          if (k->closing) return;
          if (nread < 0) {
            k->close();
            return;
          }
          if (nread == 0) return;
          if (k->tunnel) {
            k->write(std::string(buf->base, static_cast<size_t>(nread)));
            return;
          }
          llhttp_errno_t err = llhttp_execute(&k->parser, buf->base, static_cast<size_t>(nread));
          while (err == HPE_PAUSED_UPGRADE && !k->closing) {
            const char* pos = llhttp_get_error_pos(&k->parser);
            if (k->tunnel) {
              // Answered 101: what follows the request is the new protocol's, echoed.
              if (pos < buf->base + nread) {
                k->write(std::string(pos, static_cast<size_t>(buf->base + nread - pos)));
              }
              err = HPE_OK;
              break;
            }
            // An upgrade request, answered without a 101 (answer()): the connection stays
            // HTTP/1.1 (RFC 9110 7.8), so what follows is the next request.
            llhttp_resume_after_upgrade(&k->parser);
            err = llhttp_execute(&k->parser, pos, static_cast<size_t>(buf->base + nread - pos));
          }
          if (err != HPE_OK && err != HPE_PAUSED && !k->closing) {
            fail(std::string("the proxy sent the upstream something that is not HTTP/1.1: ") +
                 llhttp_errno_name(err) + ": " + llhttp_get_error_reason(&k->parser));
          }
        });
  }

  // Request smuggling oracle: whatever the client sent, the proxy must forward an unambiguous
  // request.
  void checkForwardedHead(const Conn& c, llhttp_t* p) {
    if (c.url.empty() || (c.url[0] != '/' && c.url != "*")) {
      fail("forwarded request target is not origin-form: \"" + c.url + "\"");
    }
    int content_length = 0, transfer_encoding = 0, host = 0;
    for (const auto& [name, value] : c.headers) {
      if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
        fail("forwarded header name is not a token: \"" + name + "\"");
      }
      if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        fail("forwarded header value holds CR, LF or NUL: " + name);
      }
      std::string lower = name;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (lower == "content-length") ++content_length;
      if (lower == "transfer-encoding") {
        ++transfer_encoding;
        if (value != "chunked") fail("forwarded transfer-encoding is \"" + value + "\"");
      }
      if (lower == "host") {
        ++host;
        // An authority (RFC 3986 3.2.2), as the upstream will read it: no whitespace, path,
        // query, fragment or userinfo that would make it name another host than the one routed.
        if (value.find_first_of(std::string_view(" \t/?#@\\", 7)) != std::string::npos) {
          fail("forwarded host is not a bare authority: \"" + value + "\"");
        }
      }
    }
    if (content_length > 1 || transfer_encoding > 1 || (content_length && transfer_encoding)) {
      fail("forwarded request has ambiguous framing (content-length x" +
           std::to_string(content_length) + ", transfer-encoding x" +
           std::to_string(transfer_encoding) + ")");
    }
    if (host != 1) fail("forwarded request has " + std::to_string(host) + " host headers");
    // An upgrade is relayed only without a body: after it, the bytes are another protocol's.
    if (p->upgrade != 0 && (transfer_encoding > 0 || p->content_length > 0)) {
      fail("forwarded upgrade request has a body");
    }
    if (p->http_major != 1 || p->http_minor != 1) fail("forwarded request is not HTTP/1.1");
  }

  void answer(Conn& c, bool head, bool upgrade) {
    switch (mode_) {
      case UpstreamMode::Upgrade:
        if (upgrade) {
          c.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: fuzz\r\nconnection: upgrade\r\n"
                  "\r\ntunnel:");
          c.tunnel = true;
          break;
        }
        [[fallthrough]];
      case UpstreamMode::Ok:
        c.write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: ok\r\n\r\nhello");
        break;
      case UpstreamMode::Chunked:
        c.write(head ? "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                     : "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
                       "3;ext=1\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n");
        break;
      case UpstreamMode::CloseDelimited:
        c.write("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end");
        c.close();
        break;
      case UpstreamMode::ServiceDown:
        c.write("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown");
        break;
      case UpstreamMode::ContinueThen204:
        c.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-up: 204\r\n\r\n");
        break;
      case UpstreamMode::ResetOnHead:
        c.close();
        break;
      case UpstreamMode::Hang:
        break;
      case UpstreamMode::Raw:
        c.write(raw_);
        c.close();
        break;
      case UpstreamMode::NotModified:
        c.write("HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\netag: \"x\"\r\n\r\n");
        break;
      case UpstreamMode::Large: {
        constexpr size_t kSize = 512 * 1024;
        std::string r = "HTTP/1.1 200 OK\r\ncontent-length: " + std::to_string(kSize) + "\r\n\r\n";
        if (!head) r.append(kSize, 'L');
        c.write(std::move(r));
        break;
      }
      case UpstreamMode::kCount:
        break;
    }
  }

  uv_loop_t* loop_;
  uv_tcp_t server_;
  uint16_t port_ = 0;
  UpstreamMode mode_ = UpstreamMode::Ok;
  std::string raw_;
  std::set<Conn*> conns_;
};

// --- The proxy under test -------------------------------------------------------------------

// Every route and cluster feature a request can reach. Timeouts are short so an input that waits
// on one costs milliseconds; the per-try timeout is shorter than the route timeout so retries on
// timeout happen too.
constexpr const char* kConfigTemplate = R"(
workers: 1
listeners:
  - name: ingress
    address: 127.0.0.1:${LISTEN}
    idle_timeout: 50ms
    request_headers_timeout: 30ms
    max_request_headers_kb: 4
    routes:
      - name: api
        match: { prefix: /api/, method: GET, headers: { x-canary: "1" } }
        clusters: [ { name: main, weight: 3 }, { name: other, weight: 1 } ]
        timeout: 30ms
      - name: exact
        match: { path: /exact }
        cluster: main
        timeout: 30ms
      - name: retry
        match: { prefix: /retry }
        cluster: main
        timeout: 30ms
        retry:
          attempts: 3
          on: [connect-failure, reset, timeout, 5xx, retriable-status-codes]
          retriable_status_codes: [204]
          per_try_timeout: 10ms
          backoff: { base: 1ms, max: 2ms }
          methods: [GET, HEAD, POST, PUT]
          buffer_limit_kb: 1
      - name: dead
        match: { prefix: /dead }
        cluster: dead
        timeout: 30ms
        retry: { attempts: 2, backoff: { base: 1ms, max: 1ms } }
        fallback: { status: 503, body: "fallback", headers: { x-fb: "1" } }
      - name: fb
        match: { prefix: /fb }
        cluster: main
        timeout: 30ms
        fallback: { cluster: other }
      - name: limited
        match: { prefix: /rl }
        cluster: main
        timeout: 30ms
        rate_limit: { requests_per_second: 1, burst: 1 }
      - name: bulk
        match: { prefix: /bulk }
        cluster: bulk
        timeout: 30ms
      - name: all
        match: { prefix: / }
        cluster: main
        timeout: 30ms
clusters:
  - name: main
    connect_timeout: 100ms
    endpoints: [ { address: 127.0.0.1:${UP} } ]
  - name: other
    lb_policy: least_request
    connect_timeout: 100ms
    endpoints: [ { address: 127.0.0.1:${UP}, weight: 2 } ]
  - name: bulk
    lb_policy: random
    connect_timeout: 100ms
    endpoints: [ { address: 127.0.0.1:${UP} } ]
    limits: { max_connections: 1, max_pending_requests: 1, max_requests: 2, max_retries: 1 }
    bulkhead: { max_concurrent_requests: 1, max_queue: 1, queue_timeout: 10ms }
  - name: dead
    lb_policy: weighted_round_robin
    connect_timeout: 50ms
    endpoints: [ { address: 127.0.0.1:${DEAD} } ]
    circuit_breaker: { consecutive_failures: 3, open_duration: 20ms, max_ejection_percent: 100 }
)";

std::string replaceAll(std::string s, std::string_view from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

// A port with nothing listening: bind, read the port, close.
uint16_t deadPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class Harness {
 public:
  Harness() {
    // As remora's main() does: a write to a connection the peer reset must fail with EPIPE, not
    // kill the process.
    ::signal(SIGPIPE, SIG_IGN);
    // Log through a sink that drops everything, at debug level, so message formatting of
    // attacker-controlled strings runs too.
    auto logger = std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_mt>());
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
    std::string err;
    access_log_ = AccessLogger::open("/dev/null", err);
    worker_ = std::make_unique<Worker>(0, access_log_);
    upstream_ = std::make_unique<Upstream>(worker_->loop());

    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    // Accepted sockets inherit a small send buffer: loopback would otherwise take every response
    // in one write(), and the proxy's write queue, write-progress callbacks and flow control
    // (pausing the upstream above 256 KiB queued) would never run.
    int sndbuf = 8192;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(listen_fd_, 1024) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      fail("cannot open the proxy's listening socket");
    }
    listen_port_ = ntohs(a.sin_port);

    std::string yaml = kConfigTemplate;
    yaml = replaceAll(yaml, "${LISTEN}", std::to_string(listen_port_));
    yaml = replaceAll(yaml, "${UP}", std::to_string(upstream_->port()));
    yaml = replaceAll(yaml, "${DEAD}", std::to_string(deadPort()));
    config::LoadResult r = config::loadString(yaml, "fuzz.yaml");
    if (!r.ok()) fail("bad fixture config:\n" + r.formatErrors());
    snapshot_ = Snapshot::build(r.config, 1, "file", stats_, runtime_, err);
    if (!snapshot_) fail("Snapshot::build: " + err);
    std::vector<ListenerSocket> sockets;
    sockets.push_back({"ingress", "127.0.0.1:" + std::to_string(listen_port_), listen_fd_});
    worker_->applySnapshot(snapshot_, std::move(sockets));
    runLoop();
  }

  void runOne(const uint8_t* data, size_t size) {
    if (size < 2) return;
    const uint8_t split = data[0];
    // Modes past the last one mean Ok: the plain answer is the one worth most of the time.
    const auto mode = (data[1] & 0x0f) < static_cast<uint8_t>(UpstreamMode::kCount)
                          ? static_cast<UpstreamMode>(data[1] & 0x0f)
                          : UpstreamMode::Ok;
    std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    std::string_view request = rest;
    std::string raw;
    if (size_t m = rest.find(kUpstreamMarker); m != std::string_view::npos) {
      request = rest.substr(0, m);
      raw = std::string(rest.substr(m + kUpstreamMarker.size()));
    }
    upstream_->setMode(mode, std::move(raw));
    client_checker_.reset();
    if (request.find("HEAD") == std::string_view::npos) client_checker_.emplace();

    int fd = connectClient((split & 0x40) != 0);
    // Cut the request into writes of `chunk` bytes; the loop runs between writes, so the proxy
    // sees each one in its own read.
    static constexpr size_t kChunks[16] = {0, 1, 2, 3, 5, 7, 11, 16, 17, 31, 64, 100, 256, 512, 1024, 4096};
    size_t chunk = kChunks[split & 0x0f];
    if (chunk == 0) chunk = request.size() == 0 ? 1 : request.size();
    // Bound the number of writes per input so single-byte splits of long inputs stay cheap.
    chunk = std::max(chunk, request.size() / 512 + 1);
    bool client_done = false;
    for (size_t off = 0; off < request.size() && !client_done; off += chunk) {
      std::string_view piece = request.substr(off, chunk);
      if (!sendAll(fd, piece)) break;
      // Two turns: one to read, one for what that read deferred.
      runLoop();
      runLoop();
      client_done = drainClient(fd);
    }
    const bool abort_client = (split & 0x30) == 0x30;
    if (abort_client) {
      // Reset: SO_LINGER 0 then close sends RST instead of FIN.
      linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      ::close(fd);
      fd = -1;
    } else {
      ::shutdown(fd, SHUT_WR);
      // The client reads until the proxy closes: it must, since the client can send no more.
      driveUntil([&] { return client_done || (client_done = drainClient(fd)); },
                 "the proxy neither answered nor closed the connection after the client's FIN");
      ::close(fd);
    }
    // The proxy notices and frees the connection.
    driveUntil([&] { return worker_->activeConnections() == 0; },
               "the proxy kept a downstream connection after its client was gone");
    // Drop every upstream connection so the next input starts from the same state: each turn,
    // for a connect still in flight when the client left completes afterwards (the pool keeps a
    // connect its request no longer needs, as Envoy's does, for the next request).
    std::string open;
    driveUntil(
        [&] {
          upstream_->closeAll();
          open.clear();
          if (upstream_->openConnections() != 0) {
            open = std::to_string(upstream_->openConnections()) + " at the upstream";
          }
          for (const auto& c : snapshot_->clusters()) {
            if (int64_t n = c->stats->upstream_connections_active.value(); n != 0) {
              // append(), not operator+: GCC 12 warns falsely (-Wrestrict) on " " + to_string().
              open.append(" ").append(std::to_string(n)).append(" in cluster ").append(c->name());
            }
          }
          return open.empty();
        },
        [&] { return "upstream connections still open after the upstream closed them:" + open; });
    checkBalanced();
  }

 private:
  int connectClient(bool small_window) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (small_window) {
      // A receive window of a few KiB: the proxy's writes stop completing at once, so its write
      // queue, write-progress callbacks and flow control towards the upstream run too.
      int rcvbuf = 2048;
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(listen_port_);
    // Loopback connects complete in the kernel (listen backlog) without the proxy's help, but
    // libFuzzer's SIGALRM may interrupt the wait: non-blocking, then wait for writability.
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      if (errno != EINPROGRESS && errno != EINTR) {
        fail(std::string("connect to the proxy: ") + std::strerror(errno));
      }
      pollfd p{fd, POLLOUT, 0};
      int rc;
      do {
        rc = ::poll(&p, 1, 5000);
      } while (rc < 0 && errno == EINTR);
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (rc != 1 || err != 0) {
        fail(std::string("connect to the proxy: ") + (rc != 1 ? "timeout" : std::strerror(err)));
      }
    }
    // Let the proxy accept before the first byte, as with a real client.
    size_t before = stats().downstream_connections.value();
    driveUntil([&] { return stats().downstream_connections.value() > before; },
               "the proxy did not accept a connection");
    return fd;
  }

  ListenerStats& stats() { return *snapshot_->listeners()[0].stats; }

  bool sendAll(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        // The proxy stopped reading (a request in flight, pipelined bytes held): let it work.
        runLoop();
        if (drainClient(fd)) return false;
        continue;
      }
      return false;  // the proxy closed or reset the connection
    }
    return true;
  }

  // Reads and discards what the proxy sent; true once it closed (EOF or reset).
  bool drainClient(int fd) {
    char buf[64 * 1024];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        if (client_checker_) client_checker_->feed(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return true;
      if (errno == EINTR) continue;
      return errno != EAGAIN;
    }
  }

  // One non-blocking turn of the worker's loop.
  void runLoop() { uv_run(worker_->loop(), UV_RUN_NOWAIT); }

  // Runs the loop (sleeping in poll on its backend fd when idle) until `done` or the deadline.
  void driveUntil(const std::function<bool()>& done, const char* what) {
    driveUntil(done, [what] { return std::string(what); });
  }
  void driveUntil(const std::function<bool()>& done, const std::function<std::string()>& what) {
    const auto deadline = Clock::now() + kConnectionDeadline;
    while (!done()) {
      if (Clock::now() > deadline) fail(what());
      int timeout = uv_backend_timeout(worker_->loop());
      if (timeout < 0 || timeout > 5) timeout = 5;
      pollfd p{uv_backend_fd(worker_->loop()), POLLIN, 0};
      ::poll(&p, 1, timeout);
      runLoop();
    }
  }

  // Leak oracle: with no connection open, nothing may still be counted as in use.
  void checkBalanced() {
    if (stats().downstream_connections_active.value() != 0) {
      fail("remora_downstream_connections_active is " +
           std::to_string(stats().downstream_connections_active.value()) + " with no connection");
    }
    for (const auto& c : snapshot_->clusters()) {
      const std::string who = "cluster " + c->name() + ": ";
      if (c->stats->upstream_requests_active.value() != 0) {
        fail(who + "upstream_requests_active is " +
             std::to_string(c->stats->upstream_requests_active.value()) + " with no request");
      }
      for (auto kind : {resilience::ResourceKind::Connections,
                        resilience::ResourceKind::PendingRequests,
                        resilience::ResourceKind::Requests, resilience::ResourceKind::Retries}) {
        if (c->limits->active(kind) != 0) {
          fail(who + std::string(resilience::toString(kind)) + " limit still holds " +
               std::to_string(c->limits->active(kind)));
        }
      }
      if (c->bulkhead && (c->bulkhead->active() != 0 || c->bulkhead->queued() != 0)) {
        fail(who + "bulkhead still holds " + std::to_string(c->bulkhead->active()) +
             " slot(s) and " + std::to_string(c->bulkhead->queued()) + " waiter(s)");
      }
      for (const auto& e : c->endpoints()) {
        if (e.runtime->active_requests.load() != 0) {
          fail(who + "endpoint " + e.key + " still counts " +
               std::to_string(e.runtime->active_requests.load()) + " active requests");
        }
      }
    }
  }

  StatsStore stats_;
  RuntimeRegistry runtime_{stats_, RealTimeSource::instance()};
  std::shared_ptr<AccessLogger> access_log_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<Upstream> upstream_;
  std::optional<ClientChecker> client_checker_;  // the current input's, unless it has a HEAD
  SnapshotConstSharedPtr snapshot_;
  int listen_fd_ = -1;
  uint16_t listen_port_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Built on first use and never destroyed: the worker's loop and sockets live for the process.
  static Harness* harness = new Harness();
  if (size > 64 * 1024) return -1;
  g_input = reinterpret_cast<const char*>(data);
  g_input_size = size;
  harness->runOne(data, size);
  g_input = nullptr;
  return 0;
}
