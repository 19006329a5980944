#include "worker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "downstream.h"
#include "upstream.h"

namespace remora {

namespace {
constexpr size_t kReadBufferSize = 64 * 1024;
}

Worker::Worker(size_t id, std::shared_ptr<AccessLogger> access_log)
    : id_(id), rng_(std::random_device{}()), read_buffer_(kReadBufferSize),
      access_log_(std::move(access_log)) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, &Worker::onAsync);
  async_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &Worker::onCheck);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  timeouts_.emplace(&loop_);
}

Worker::~Worker() {
  uv_loop_close(&loop_);
}

void Worker::start() {
  thread_ = std::thread([this] {
    char name[16];
    std::snprintf(name, sizeof(name), "remora-wrk-%zu", id_);
    pthread_setname_np(pthread_self(), name);
    uv_run(&loop_, UV_RUN_DEFAULT);
    // Everything is closed; let the last close callbacks run.
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::post(std::function<void()> fn) {
  std::lock_guard lock(queue_mutex_);
  // After stop() the async handle is closed; late tasks (a bulkhead grant racing shutdown) drop.
  if (closed_) return;
  queue_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Worker::onAsync(uv_async_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(self->queue_mutex_);
    work.swap(self->queue_);
  }
  for (auto& fn : work) fn();
}

void Worker::defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  // An active idle handle keeps the loop from blocking in poll while work is waiting.
  uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void Worker::deferredDelete(DeletablePtr object) {
  if (!object) return;
  to_delete_.push_back(std::move(object));
  uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void Worker::onCheck(uv_check_t* handle) { static_cast<Worker*>(handle->data)->runDeferred(); }

void Worker::runDeferred() {
  // Deferred work may defer more work; run until quiet.
  while (!deferred_.empty() || !to_delete_.empty()) {
    running_.swap(deferred_);
    for (auto& fn : running_) fn();
    running_.clear();
    deleting_.swap(to_delete_);
    deleting_.clear();
  }
  uv_idle_stop(&idle_);
}

namespace {

// How much finished-request memory a worker keeps: enough for the requests in flight at a high
// concurrency, bounded so a burst does not pin memory for good. Oversized objects (a huge URL or
// header block, a large serialized head) are freed rather than kept.
constexpr size_t kMaxRecycled = 1024;
constexpr size_t kMaxRecycledBufferBytes = 16 * 1024;

}  // namespace

RequestHead Worker::takeRequestHead() {
  if (free_heads_.empty()) return RequestHead();
  RequestHead h = std::move(free_heads_.back());
  free_heads_.pop_back();
  return h;
}

void Worker::recycleRequestHead(RequestHead&& head) {
  if (free_heads_.size() >= kMaxRecycled) return;
  head.reset();  // frees what an oversized request left
  free_heads_.push_back(std::move(head));
}

std::string Worker::takeBuffer() {
  if (free_buffers_.empty()) return std::string();
  std::string b = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return b;
}

void Worker::recycleBuffer(std::string&& buffer) {
  if (free_buffers_.size() >= kMaxRecycled || buffer.capacity() > kMaxRecycledBufferBytes ||
      buffer.capacity() <= 15) {  // 15: std::string's inline buffer, nothing to keep
    return;
  }
  buffer.clear();
  free_buffers_.push_back(std::move(buffer));
}

void Worker::applySnapshot(SnapshotConstSharedPtr snapshot, std::vector<ListenerSocket> sockets) {
  // Load balancer state is per worker (no locks on the pick path). A cluster whose endpoint set
  // the new snapshot shares with the old one (same endpoints, same settings) keeps its balancer,
  // so a push that changes one cluster does not restart the rotation of every other.
  std::vector<ClusterLb> lbs;
  lbs.reserve(snapshot->clusters().size());
  for (const auto& c : snapshot->clusters()) {
    const ClusterInfo* old = snapshot_ ? snapshot_->findCluster(c->name()) : nullptr;
    if (old != nullptr && old->endpoint_set == c->endpoint_set &&
        old->index < cluster_lbs_.size() && cluster_lbs_[old->index].lb) {
      lbs.push_back(std::move(cluster_lbs_[old->index]));
      continue;
    }
    ClusterLb clb;
    clb.lb = lb::createLoadBalancer(c->config->lb_policy, c->endpoints().size(), id_);
    clb.hosts.resize(c->endpoints().size());
    lbs.push_back(std::move(clb));
  }
  cluster_lbs_ = std::move(lbs);
  snapshot_ = std::move(snapshot);

  // Listeners: keep those whose address is still configured (renamed or not), close the rest,
  // adopt the new sockets.
  std::unordered_map<std::string, std::string> names;  // address -> listener name
  for (const auto& l : snapshot_->listeners()) names[l.config->address.str()] = l.name();
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    auto n = names.find(it->first);
    if (n == names.end() || draining_) {
      it->second->close();
      it = listeners_.erase(it);
    } else {
      it->second->setName(n->second);
      ++it;
    }
  }
  for (auto& s : sockets) {
    if (draining_) {
      ::close(s.fd);
      continue;
    }
    std::string address = s.address;
    auto* handle = new ListenerHandle(*this, std::move(s));
    int rc = handle->start();
    if (rc != 0) {
      spdlog::error("worker {}: cannot listen on {}: {}", id_, address, uvError(rc));
      handle->close();
      continue;
    }
    listeners_[address] = handle;
  }

  // Pools: drain those whose endpoint is no longer in any cluster. Marked by lookups, not by a
  // set of every key: a push to a proxy with few pools and many endpoints allocates nothing.
  if (pools_.empty()) return;
  const uint64_t mark = ++pool_mark_;
  for (const auto& c : snapshot_->clusters()) {
    for (const auto& e : c->endpoints()) {
      auto it = pools_.find(e.pool_key);
      if (it != pools_.end()) it->second->setLiveMark(mark);
    }
  }
  for (auto& [key, pool] : pools_) {
    if (pool->liveMark() != mark) pool->drain();
  }
}

ConnectionPool& Worker::pool(const EndpointInfo& endpoint) {
  auto& slot = pools_[endpoint.pool_key];
  if (!slot) slot = std::make_unique<ConnectionPool>(*this, endpoint);
  return *slot;
}

void Worker::onPoolEmpty(ConnectionPool* pool) {
  // Called from inside the pool: erase after the current event.
  std::string key = pool->poolKey();
  defer([this, key, pool] {
    auto it = pools_.find(key);
    if (it != pools_.end() && it->second.get() == pool && pool->empty()) pools_.erase(it);
  });
}

namespace {

// What the load balancer sees of each endpoint right now: healthy, breaker admitting, not refused
// earlier in this pick.
void fillHosts(const ClusterInfo& cluster, const std::vector<int>& refused,
               std::vector<lb::LbHost>& hosts) {
  const std::vector<EndpointInfo>& endpoints = cluster.endpoints();
  hosts.resize(endpoints.size());
  for (size_t i = 0; i < hosts.size(); ++i) {
    const EndpointInfo& e = endpoints[i];
    hosts[i].weight = e.config.weight;
    hosts[i].available = e.runtime->healthy.load(std::memory_order_relaxed) &&
                         (!e.breaker || e.breaker->isAvailable());
    hosts[i].active_requests = &e.runtime->active_requests;
  }
  for (int r : refused) hosts[static_cast<size_t>(r)].available = false;
}

}  // namespace

int Worker::pickEndpoint(const ClusterInfo& cluster, int exclude, const std::vector<int>& refused) {
  // A request may hold a cluster of an older snapshot than the worker's: the balancer is the
  // same one when that cluster's endpoint set is still the current one.
  if (cluster.index >= cluster_lbs_.size() || !snapshot_ ||
      snapshot_->clusters()[cluster.index]->endpoint_set != cluster.endpoint_set) {
    // Rare (a request that outlived a reload and retries): fall back to a fresh balancer.
    auto lb = lb::createLoadBalancer(cluster.config->lb_policy, cluster.endpoints().size(), id_);
    std::vector<lb::LbHost> hosts;
    fillHosts(cluster, refused, hosts);
    return lb->pick(hosts, exclude, rng_());
  }
  ClusterLb& clb = cluster_lbs_[cluster.index];
  fillHosts(cluster, refused, clb.hosts);
  return clb.lb->pick(clb.hosts, exclude, rng_());
}

void formatRequestId(uint64_t hi, uint64_t lo, std::string& out) {
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  // Two hex digits per byte from one table: 16 lookups instead of 32 shifts and masks.
  static constexpr auto kHexPairs = [] {
    std::array<char, 512> t{};
    constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) {
      t[2 * i] = kHex[i >> 4];
      t[2 * i + 1] = kHex[i & 0xf];
    }
    return t;
  }();
  char buf[36];
  char* p = buf;
  auto put = [&](uint64_t v, int bytes) {
    for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) {
      std::memcpy(p, &kHexPairs[2 * ((v >> shift) & 0xff)], 2);
      p += 2;
    }
  };
  put(hi >> 32, 4);
  *p++ = '-';
  put((hi >> 16) & 0xffff, 2);
  *p++ = '-';
  put(hi & 0xffff, 2);
  *p++ = '-';
  put(lo >> 48, 2);
  *p++ = '-';
  put(lo & 0xffffffffffffULL, 6);
  out.assign(buf, sizeof(buf));
}

void Worker::newRequestId(std::string& out) {
  // UUID version 4 from the worker's PRNG: unique enough for tracing, no syscall, no lock.
  const uint64_t hi = rng_();
  formatRequestId(hi, rng_(), out);
}

void Worker::addConnection(DownstreamConnection* c) {
  connections_.push_back(c);
  active_connections_.store(connections_.size());
}

void Worker::removeConnection(DownstreamConnection* c) {
  auto it = std::find(connections_.begin(), connections_.end(), c);
  if (it != connections_.end()) {
    *it = connections_.back();
    connections_.pop_back();
  }
  active_connections_.store(connections_.size());
}

void Worker::drain() {
  draining_ = true;
  for (auto& [address, handle] : listeners_) handle->close();
  listeners_.clear();
  // Copy: drain() may close (and later remove) connections.
  std::vector<DownstreamConnection*> conns = connections_;
  for (auto* c : conns) c->drain();
}

void Worker::stop() {
  stopping_ = true;
  for (auto& [address, handle] : listeners_) handle->close();
  listeners_.clear();
  std::vector<DownstreamConnection*> conns = connections_;
  for (auto* c : conns) c->close();
  for (auto& [key, pool] : pools_) pool->drain();
  runDeferred();
  {
    std::lock_guard lock(queue_mutex_);
    closed_ = true;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  // Streams that close later unlink their entries from it; nothing expires any more.
  timeouts_->close();
  // Pools are freed once their connections' close callbacks ran: after the loop ends.
  uv_stop(&loop_);
}

// ---------------------------------------------------------------------------------------------

ListenerHandle::ListenerHandle(Worker& worker, ListenerSocket socket)
    : worker_(worker), name_(std::move(socket.name)), address_(std::move(socket.address)) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  uv_tcp_open(&tcp_, socket.fd);
}

int ListenerHandle::start() {
  return uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), 4096, &ListenerHandle::onConnection);
}

void ListenerHandle::close() {
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
           [](uv_handle_t* h) { delete static_cast<ListenerHandle*>(h->data); });
}

void ListenerHandle::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<ListenerHandle*>(server->data);
  if (status < 0) {
    spdlog::warn("listener {} accept error: {}", self->name_, uvError(status));
    return;
  }
  auto* conn = new DownstreamConnection(self->worker_, self->name_);
  conn->accept(server);
}

}  // namespace remora
