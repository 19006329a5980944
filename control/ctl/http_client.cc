#include "http_client.h"

#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <arpa/inet.h>

namespace remora::ctl {

namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

struct ParseState {
  int status = 0;
  std::string body;
  bool done = false;
};

// Connects to the first address of `host` that accepts within the deadline.
int connectTo(const std::string& host, uint16_t port, Clock::time_point deadline,
              std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  // Brackets of an IPv6 literal are part of the address syntax, not of the host.
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const int rc = getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    error = "cannot resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) > 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) break;
        error = std::strerror(err);
      } else {
        error = "connect timed out";
      }
    } else {
      error = std::strerror(errno);
    }
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

// The socket, plain or through OpenSSL. send/recv return what ::send/::recv would, with errno
// EAGAIN (and wantWrite() telling the direction) when the caller must poll and retry.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  ~Channel() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    ::close(fd_);
  }
  int fd() const { return fd_; }
  bool wantWrite() const { return want_write_; }
  // Why the last TLS read or write failed ("" for plain sockets or no failure).
  const std::string& lastError() const { return last_error_; }

  // Sets up TLS and completes the handshake before `deadline`. False with `error`.
  bool startTls(const TlsOptions& o, const std::string& host, Clock::time_point deadline,
                std::string& error) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (!o.ca_file.empty() ? SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr) != 1
                           : SSL_CTX_set_default_verify_paths(ctx_) != 1) {
      error = "cannot load the CA file " + o.ca_file + ": " + sslError();
      return false;
    }
    if (!o.cert_file.empty() &&
        (SSL_CTX_use_certificate_chain_file(ctx_, o.cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
      error = "cannot load the client certificate " + o.cert_file + " / key " + o.key_file +
              ": " + sslError();
      return false;
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    std::string h = host;
    if (h.size() > 2 && h.front() == '[') h = h.substr(1, h.size() - 2);
    unsigned char ip[16];
    if (inet_pton(AF_INET, h.c_str(), ip) == 1 || inet_pton(AF_INET6, h.c_str(), ip) == 1) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), h.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, h.c_str());
      SSL_set1_host(ssl_, h.c_str());
    }
    for (;;) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_);
      if (rc == 1) return true;
      int err = SSL_get_error(ssl_, rc);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        error = "TLS handshake failed: " + sslError();
        long v = SSL_get_verify_result(ssl_);
        if (v != X509_V_OK) error += std::string(" (") + X509_verify_cert_error_string(v) + ")";
        return false;
      }
      pollfd pfd{fd_, static_cast<short>(err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        error = "TLS handshake timed out";
        return false;
      }
    }
  }

  ssize_t send(const char* p, size_t n) {
    if (ssl_ == nullptr) return ::send(fd_, p, n, MSG_NOSIGNAL);
    return sslIo(SSL_write(ssl_, p, static_cast<int>(n)));
  }
  ssize_t recv(char* p, size_t n) {
    if (ssl_ == nullptr) return ::recv(fd_, p, n, 0);
    ssize_t r = sslIo(SSL_read(ssl_, p, static_cast<int>(n)));
    return r;
  }

 private:
  static std::string sslError() {
    unsigned long e = ERR_get_error();
    if (e == 0) return "connection closed";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
  }
  ssize_t sslIo(int rc) {
    if (rc > 0) return rc;
    int err = SSL_get_error(ssl_, rc);
    want_write_ = err == SSL_ERROR_WANT_WRITE;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      errno = EAGAIN;
      return -1;
    }
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    // TLS 1.3 reports a refused client certificate as an alert on the first read.
    last_error_ = "TLS: " + sslError();
    errno = ECONNRESET;
    return err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? 0 : -1;
  }

  int fd_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool want_write_ = false;
  std::string last_error_;
};

}  // namespace

HttpResult BlockingHttpClient::request(
    const std::string& method, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body) {
  HttpResult out;
  const Clock::time_point deadline = Clock::now() + timeout_;
  const std::string where = host_ + ":" + std::to_string(port_);
  std::string error;
  int fd = connectTo(host_, port_, deadline, error);
  if (fd < 0) {
    out.error = "cannot connect to " + where + ": " + error;
    return out;
  }
  Channel ch(fd);
  if (tls_.enabled && !ch.startTls(tls_, host_, deadline, error)) {
    out.error = "cannot talk TLS to " + where + ": " + error;
    return out;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nhost: " + where +
                    "\r\nconnection: close\r\nuser-agent: remoractl\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "PUT" || method == "POST") {
    req += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ch.send(req.data() + off, req.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pfd{fd, static_cast<short>(ch.wantWrite() || !tls_.enabled ? POLLOUT : POLLIN), 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        out.error = "timed out sending the request to " + where;
        return out;
      }
    } else {
      out.error = "cannot send to " + where + ": " + std::strerror(errno);
      return out;
    }
  }

  ParseState state;
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_headers_complete = [](llhttp_t* p) {
    static_cast<ParseState*>(p->data)->status = p->status_code;
    return 0;
  };
  settings.on_body = [](llhttp_t* p, const char* at, size_t len) {
    static_cast<ParseState*>(p->data)->body.append(at, len);
    return 0;
  };
  settings.on_message_complete = [](llhttp_t* p) {
    static_cast<ParseState*>(p->data)->done = true;
    return 0;
  };
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parser.data = &state;
  char buf[16384];
  while (!state.done) {
    ssize_t n = ch.recv(buf, sizeof(buf));
    if (n > 0) {
      if (llhttp_execute(&parser, buf, static_cast<size_t>(n)) != HPE_OK) {
        out.error = std::string("malformed response from ") + where + ": " +
                    llhttp_get_error_reason(&parser);
        break;
      }
    } else if (n == 0) {
      llhttp_finish(&parser);
      if (!state.done) out.error = "the connection to " + where + " closed before the answer";
      break;
    } else if (errno == EAGAIN || errno == EINTR) {
      pollfd pfd{fd, static_cast<short>(ch.wantWrite() ? POLLOUT : POLLIN), 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        out.error = "timed out waiting for " + where;
        break;
      }
    } else {
      out.error = "cannot read from " + where + ": " +
                  (ch.lastError().empty() ? std::strerror(errno) : ch.lastError());
      break;
    }
  }
  if (state.done) {
    out.transport_ok = true;
    out.error.clear();
  }
  out.status = state.status;
  out.body = std::move(state.body);
  return out;
}

}  // namespace remora::ctl
