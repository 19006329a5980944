#include "http_client.h"

#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  std::string req = method + " " + path + " HTTP/1.1\r\nhost: " + where +
                    "\r\nconnection: close\r\nuser-agent: remoractl\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "PUT" || method == "POST") {
    req += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        ::close(fd);
        out.error = "timed out sending the request to " + where;
        return out;
      }
    } else {
      ::close(fd);
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
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
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
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) {
        out.error = "timed out waiting for " + where;
        break;
      }
    } else {
      out.error = "cannot read from " + where + ": " + std::strerror(errno);
      break;
    }
  }
  ::close(fd);
  if (state.done) {
    out.transport_ok = true;
    out.error.clear();
  }
  out.status = state.status;
  out.body = std::move(state.body);
  return out;
}

}  // namespace remora::ctl
