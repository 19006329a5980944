#pragma once

// A worker: one thread, one libuv loop, its own listener sockets (SO_REUSEPORT: the kernel spreads
// connections over the workers), its own upstream connection pools and load-balancer state.
// Nothing here is shared with other workers except the immutable Snapshot and the atomic stats, so
// the data plane takes no locks.

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lb/load_balancer.h"
#include "request_head.h"
#include "snapshot.h"
#include "timeout_queue.h"

namespace remora {

class AccessLogger;
class ConnectionPool;
class DownstreamConnection;
class ListenerHandle;

// Objects that may be destroyed while their own callbacks are on the stack are handed to
// Worker::deferredDelete and freed after the current event, as Envoy's dispatcher does.
class Deletable {
 public:
  virtual ~Deletable() = default;
};
using DeletablePtr = std::unique_ptr<Deletable>;

// A listening socket the server created (bound, listening) for one worker.
struct ListenerSocket {
  std::string name;     // listener name in the snapshot
  std::string address;  // "host:port": identity across reloads
  int fd = -1;
};

// Writes the UUID version 4 of 128 random bits (`hi`, `lo`; six of them become the version and
// variant) as 36 lower-case characters, 8-4-4-4-12.
void formatRequestId(uint64_t hi, uint64_t lo, std::string& out);

class Worker {
 public:
  Worker(size_t id, std::shared_ptr<AccessLogger> access_log);
  ~Worker();

  void start();
  void join();

  // Thread-safe: runs `fn` on the worker's loop thread soon.
  void post(std::function<void()> fn);

  // The following run on the worker thread (through post()).
  // Switches to `snapshot`. `sockets` are the listening sockets of listeners whose address is new
  // in it (the worker takes ownership); listeners whose address is gone are closed, the others are
  // kept (no accepted connection is dropped by a reload).
  void applySnapshot(SnapshotConstSharedPtr snapshot, std::vector<ListenerSocket> sockets);
  // Stops accepting; idle connections close, busy ones after their current response.
  void drain();
  // Closes everything and ends the loop.
  void stop();

  // Loop-thread accessors.
  size_t id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  // Per-request timeouts of a few fixed durations (per-try timeouts): no timer object each.
  TimeoutQueue& timeouts() { return *timeouts_; }
  const SnapshotConstSharedPtr& snapshot() const { return snapshot_; }
  bool draining() const { return draining_; }
  ConnectionPool& pool(const EndpointInfo& endpoint);
  // The cluster's load balancer picks among endpoints that are healthy and whose breaker admits
  // requests, avoiding `exclude` (the previous try's endpoint) and every index in `refused` when
  // it can. Returns the endpoint index or -1.
  int pickEndpoint(const ClusterInfo& cluster, int exclude, const std::vector<int>& refused);
  uint64_t random() { return rng_(); }
  // A fresh UUID v4 written into `out` (its memory reused).
  void newRequestId(std::string& out);
  AccessLogger* accessLog() { return access_log_.get(); }
  // A buffer for uv reads; data is consumed before the read callback returns.
  uv_buf_t readBuffer() { return uv_buf_init(read_buffer_.data(), read_buffer_.size()); }

  // Memory of finished requests, kept for the next ones: the steady-state request path then
  // allocates nothing for its head, header maps and serialization buffers. take*() hands out
  // a recycled object (reset, memory kept) or a new one.
  RequestHead takeRequestHead();
  void recycleRequestHead(RequestHead&& head);
  std::string takeBuffer();
  void recycleBuffer(std::string&& buffer);

  void deferredDelete(DeletablePtr object);
  // Runs `fn` after the current event, before any handle closed during it is freed.
  void defer(std::function<void()> fn);

  void addConnection(DownstreamConnection* c);
  void removeConnection(DownstreamConnection* c);
  void onPoolEmpty(ConnectionPool* pool);
  // Downstream connections open on this worker; read by the main thread while draining.
  size_t activeConnections() const { return active_connections_.load(); }

 private:
  static void onAsync(uv_async_t* handle);
  static void onCheck(uv_check_t* handle);
  void runDeferred();

  size_t id_;
  uv_loop_t loop_;
  uv_async_t async_;
  uv_check_t check_;
  uv_idle_t idle_;
  std::optional<TimeoutQueue> timeouts_;  // made once loop_ is initialized
  std::thread thread_;

  std::mutex queue_mutex_;
  std::vector<std::function<void()>> queue_;
  bool closed_ = false;  // guarded by queue_mutex_

  SnapshotConstSharedPtr snapshot_;
  struct ClusterLb {
    lb::LoadBalancerPtr lb;
    std::vector<lb::LbHost> hosts;  // scratch, refilled at each pick
  };
  std::vector<ClusterLb> cluster_lbs_;  // per ClusterInfo::index of the current snapshot
  std::unordered_map<std::string, std::unique_ptr<ConnectionPool>> pools_;
  uint64_t pool_mark_ = 0;  // applySnapshot's last ConnectionPool live mark
  std::unordered_map<std::string, ListenerHandle*> listeners_;  // by address
  std::vector<DownstreamConnection*> connections_;
  std::atomic<size_t> active_connections_{0};
  std::vector<DeletablePtr> to_delete_;
  std::vector<std::function<void()>> deferred_;
  // runDeferred() swaps these with the queues above, so neither loses its capacity.
  std::vector<DeletablePtr> deleting_;
  std::vector<std::function<void()>> running_;
  std::vector<RequestHead> free_heads_;
  std::vector<std::string> free_buffers_;
  bool draining_ = false;
  bool stopping_ = false;
  std::mt19937_64 rng_;
  std::vector<char> read_buffer_;
  std::shared_ptr<AccessLogger> access_log_;
};

// One listening socket owned by one worker.
class ListenerHandle {
 public:
  ListenerHandle(Worker& worker, ListenerSocket socket);
  void close();
  const std::string& name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }
  int start();

 private:
  static void onConnection(uv_stream_t* server, int status);
  Worker& worker_;
  uv_tcp_t tcp_;
  std::string name_;
  std::string address_;
};

}  // namespace remora
