#pragma once

// fake-upstream: a scriptable HTTP/1.1 origin for integration tests and the `make run` demo.
//
// Deliberately simple and unlike the proxy it tests: one accept thread and one thread per
// connection with blocking sockets, so its behaviour is easy to reason about. Every request is
// answered according to its own `x-fake-*` headers, or to process-wide modes set through
// `POST /__control`. See tests/fake_upstream/README.md for the full list.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace remora::fake {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 = ephemeral
  std::string name = "fake-upstream";
  bool quiet = false;  // no per-request log line on stderr
};

// Process-wide behaviour, set by `POST /__control`. A request's own x-fake-* header wins over it.
struct Modes {
  uint32_t fail_ppm = 0;  // fail_ratio in parts per million
  int fail_status = 503;
  int status = 0;          // 0 = not forced
  int healthz_status = 0;  // 0 = `status` if forced, else 200
  int delay_ms = 0;
  bool hang = false;
  std::string reset;  // "", "headers" or "mid-body"
  bool close = false;
  bool close_silently = false;
};

struct Request;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. On failure returns false and describes why in `error`.
  bool listen(std::string& error);
  uint16_t port() const { return port_; }
  // Starts the accept thread.
  void start();
  // Stops accepting, wakes every connection thread (also hanging and delayed ones) and joins
  // them all. Idempotent.
  void stop();

 private:
  struct Connection {
    uint64_t id = 0;
    int fd = -1;  // closed and set to -1 under mu_ only, so stop() never touches a reused fd
    std::thread thread;
    bool done = false;
    uint64_t counted_epoch = 0;  // stats epoch in which this connection was last counted
    uint64_t requests = 0;
  };
  // kTunnel: the request was answered 101; the connection now echoes raw bytes (tunnel()).
  enum class Next { kKeepAlive, kClose, kAbort, kTunnel };

  void acceptLoop();
  void serve(Connection& conn);
  Next handle(Connection& conn, const Request& req);
  Next handleControl(Connection& conn, const Request& req);
  void closeConnection(Connection& conn, bool abort);
  void reapFinishedLocked();
  // Sleeps up to `ms`; returns false if the server is stopping.
  bool sleepFor(int ms);
  // Blocks until the peer closes the connection or the server stops; discards input.
  void waitPeerClose(int fd);
  // After a 101: echoes `early` (bytes that came behind the request) and everything the peer
  // sends until its FIN, then sends "tunnel closed\n" (its own FIN follows in closeConnection).
  void tunnel(int fd, const char* early, size_t early_len);
  bool decideFailure();
  void log(const Connection& conn, const Request& req, int status, const char* note);

  const ServerOptions options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::unique_ptr<Connection>> conns_;
  uint64_t next_conn_id_ = 1;
  Modes modes_;
  uint64_t fail_seq_ = 0;
  // Stats; /__ paths are never counted.
  uint64_t epoch_ = 1;
  uint64_t accepted_ = 0;     // TCP connections accepted
  uint64_t connections_ = 0;  // connections that carried >= 1 request since the last reset
  uint64_t requests_ = 0;     // requests received (healthz included)
  uint64_t healthz_ = 0;      // GET /healthz among them
  uint64_t active_ = 0;       // requests being handled right now
  uint64_t open_ = 0;         // connections open right now
};

}  // namespace remora::fake
