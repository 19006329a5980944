// tcp-relay: the floor of a proxy's cost on this machine (`bench.py --targets ...,tcp-relay`).
//
// Every accepted connection gets its own connection to the upstream, and bytes are copied both
// ways, as they come: no HTTP parsing, no routing, no headers, no timers, no pooling. It makes the
// same syscalls per request as a keep-alive HTTP proxy (a read and a write on each side, an
// epoll_wait now and then) and the kernel carries the same TCP segments, so under the same CPU
// quota its req/s is what a proxy with free user space would reach: a proxy's CPU per request
// minus the relay's is what its HTTP work costs (perf/README.md, "The floor").
//
// Not a proxy to deploy: a blocking connect per accepted connection, no backpressure beyond a
// blocking write, no limits. Linux only (epoll).
//
//   tcp-relay LISTEN_PORT UPSTREAM_PORT     (both on 127.0.0.1)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void noDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// -1 when the upstream refuses (the client's connection is then closed).
int connectUpstream(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = loopback(port);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "tcp-relay: connect to 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  noDelay(fd);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

// The peer's socket buffer is full only when its reader stalls; wait for it (a benchmark tool).
bool writeAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && errno == EAGAIN) {
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, -1);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tcp-relay LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1)\n");
    return 2;
  }
  const int upstream_port = std::atoi(argv[2]);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(std::atoi(argv[1]));
  if (bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listener, 4096) != 0) {
    std::fprintf(stderr, "tcp-relay: listen on 127.0.0.1:%s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::vector<int> peer;  // peer[fd]: the other side of fd's pair, -1 when none
  static char buf[64 * 1024];
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener) {
        int c = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
        if (c < 0) continue;
        int u = connectUpstream(upstream_port);
        if (u < 0) {
          close(c);
          continue;
        }
        noDelay(c);
        if (peer.size() <= static_cast<size_t>(std::max(c, u))) peer.resize(std::max(c, u) + 1, -1);
        peer[c] = u;
        peer[u] = c;
        for (int s : {c, u}) {
          ev.data.fd = s;
          epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
        }
        continue;
      }
      const int other = peer[fd];
      if (other < 0) continue;  // closed earlier in this batch
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0 && writeAll(other, buf, static_cast<size_t>(r))) continue;
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      close(fd);  // EOF or an error on either side: the pair ends
      close(other);
      peer[fd] = peer[other] = -1;
    }
  }
}
