#include "stream_reader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace remora::control::test {

namespace {

int remainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

}  // namespace

StreamReader::~StreamReader() { close(); }

void StreamReader::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool StreamReader::open(uint16_t port, const std::string& path,
                        const std::vector<std::string>& headers,
                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close();
    return false;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nhost: 127.0.0.1\r\n";
  for (const std::string& h : headers) req += h + "\r\n";
  req += "\r\n";
  if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close();
    return false;
  }
  llhttp_settings_init(&settings_);
  settings_.on_headers_complete = [](llhttp_t* p) {
    auto* self = static_cast<StreamReader*>(p->data);
    self->status_ = p->status_code;
    self->chunked_ = (p->flags & F_CHUNKED) != 0;
    self->head_done_ = true;
    return 0;
  };
  settings_.on_body = [](llhttp_t* p, const char* at, size_t len) {
    auto* self = static_cast<StreamReader*>(p->data);
    self->body_.append(at, len);
    for (size_t i = 0; i < len; ++i) {
      if (at[i] == '\n') {
        self->lines_.push_back(std::move(self->partial_));
        self->partial_.clear();
      } else {
        self->partial_.push_back(at[i]);
      }
    }
    return 0;
  };
  llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
  parser_.data = this;
  while (!head_done_) {
    if (!pump(deadline)) return head_done_;
  }
  return true;
}

bool StreamReader::pump(std::chrono::steady_clock::time_point deadline) {
  if (fd_ < 0 || eof_) return false;
  pollfd pfd{fd_, POLLIN, 0};
  if (::poll(&pfd, 1, remainingMs(deadline)) <= 0) return false;
  char buf[65536];
  ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    if (n < 0 && errno == EINTR) return true;
    eof_ = true;
    return false;
  }
  llhttp_execute(&parser_, buf, static_cast<size_t>(n));
  return true;
}

std::optional<std::string> StreamReader::nextLine(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (next_ >= lines_.size()) {
    if (!pump(deadline)) {
      if (next_ < lines_.size()) break;
      return std::nullopt;
    }
  }
  return lines_[next_++];
}

bool StreamReader::waitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    if (!pump(deadline) && !eof_) return false;
  }
  return true;
}

}  // namespace remora::control::test
