#include "discovery.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "registry.h"

namespace remora::control {

namespace {

// Disconnected nodes are listed in /v1/nodes for this long, then forgotten (a bound on memory
// when proxies come and go with fresh ids).
constexpr auto kForgetDisconnectedAfter = std::chrono::hours(1);

std::string nowText() { return formatWallTime(std::chrono::system_clock::now()); }

nlohmann::json optionalJson(const std::optional<std::string>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

uv_timer_t* newTimer(uv_loop_t* loop, void* data) {
  auto* t = new uv_timer_t;
  uv_timer_init(loop, t);
  t->data = data;
  return t;
}

void closeTimer(uv_timer_t*& t) {
  if (t == nullptr) return;
  uv_timer_stop(t);
  uv_close(reinterpret_cast<uv_handle_t*>(t),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  t = nullptr;
}

uint64_t msUntil(MonotonicTime deadline, MonotonicTime now) {
  if (deadline <= now) return 0;
  // Rounded up: a timer that fires a hair early would find the deadline not yet due.
  return static_cast<uint64_t>(
      std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
}

}  // namespace

DiscoveryService::DiscoveryService(uv_loop_t* loop, const TimeSource& time,
                                   DiscoveryOptions options)
    : loop_(loop),
      time_(time),
      options_(options),
      debouncer_(time, options.debounce, options.max_delay),
      heartbeat_line_(std::make_shared<const std::string>("{\"heartbeat\":true}\n")) {
  push_timer_ = newTimer(loop_, this);
  heartbeat_timer_ = newTimer(loop_, this);
  const uint64_t every = std::max<uint64_t>(1, options_.heartbeat_interval.count() / 2);
  uv_timer_start(
      heartbeat_timer_,
      [](uv_timer_t* t) { static_cast<DiscoveryService*>(t->data)->onHeartbeatTimer(); }, every,
      every);
  // The heartbeat timer alone must not keep the loop alive at shutdown.
  uv_unref(reinterpret_cast<uv_handle_t*>(heartbeat_timer_));
}

DiscoveryService::~DiscoveryService() { stop(); }

void DiscoveryService::stop() {
  closeTimer(push_timer_);
  closeTimer(heartbeat_timer_);
  for (auto& [id, node] : nodes_) {
    if (node.stream == nullptr) continue;
    // The close callbacks would run after this object is gone.
    node.stream->setCloseCallback(nullptr);
    node.stream->setDrainCallback(nullptr);
    node.stream->abort();
    node.stream.reset();
  }
}

void DiscoveryService::noteChange(uint64_t version) {
  latest_change_ = std::max(latest_change_, version);
  debouncer_.changed();
  armPushTimer();
}

void DiscoveryService::publish(uint64_t version, const std::string& clusters_json, bool immediate) {
  auto body = std::make_shared<const std::string>("\"clusters\":" + clusters_json + "}\n");
  latest_change_ = std::max(latest_change_, version);
  if (immediate || push_timer_ == nullptr) {
    version_num_ = version;
    version_ = std::to_string(version);
    clusters_body_ = std::move(body);
    pending_body_.reset();
    debouncer_.reset();
    pushAll();
    return;
  }
  pending_version_num_ = version;
  pending_version_ = std::to_string(version);
  pending_body_ = std::move(body);
  if (!debouncer_.pending()) debouncer_.changed();
  maybePush();
}

// A change after a quiet period (the debouncer's leading edge) is pushed as soon as it is
// durable, even if more changes came meanwhile: those form the next burst. Within a burst the
// quiet period counts from the last change, not from the last durable version: while changes
// keep coming (and wait for their fsync) the burst is not over. Only the max delay pushes a
// snapshot of a burst that is already behind the newest change.
void DiscoveryService::maybePush() {
  if (pending_body_ == nullptr) return;
  const bool caught_up = pending_version_num_ >= latest_change_;
  if (!(debouncer_.leading() || (caught_up && debouncer_.due()) || debouncer_.maxDue())) {
    armPushTimer();
    return;
  }
  debouncer_.reset();
  version_num_ = pending_version_num_;
  version_ = pending_version_;
  clusters_body_ = std::move(pending_body_);
  pending_body_.reset();
  // Changes still on their way to the disk open the next window now (they came within the quiet
  // period of this push's changes, so they are a burst, not a leading change).
  if (latest_change_ > version_num_) debouncer_.changed();
  spdlog::debug("discovery: pushing version {} to {} connected node(s)", version_,
                connectedCount());
  pushAll();
  armPushTimer();
}

void DiscoveryService::armPushTimer() {
  if (push_timer_ == nullptr) return;
  // Nothing durable to push yet: publish() will look again when it is.
  if (pending_body_ == nullptr || !debouncer_.pending()) {
    uv_timer_stop(push_timer_);
    return;
  }
  const bool caught_up = pending_version_num_ >= latest_change_;
  const MonotonicTime deadline =
      caught_up || debouncer_.leading() ? *debouncer_.deadline() : *debouncer_.maxDeadline();
  uv_timer_start(
      push_timer_, [](uv_timer_t* t) { static_cast<DiscoveryService*>(t->data)->maybePush(); },
      msUntil(deadline, time_.now()), 0);
}

void DiscoveryService::pushAll() {
  for (auto& [id, node] : nodes_) pushTo(node);
}

void DiscoveryService::pushTo(Node& node) {
  // The newest state: a node that connects during a debounce window gets the pending version.
  if (pending_body_ != nullptr) {
    pushTo(node, pending_version_num_, pending_version_, pending_body_);
  } else if (clusters_body_ != nullptr) {
    pushTo(node, version_num_, version_, clusters_body_);
  }
}

void DiscoveryService::pushTo(Node& node, uint64_t version_num, const std::string& version,
                              const std::shared_ptr<const std::string>& body) {
  if (node.stream == nullptr || !node.stream->isOpen()) return;
  if (node.sent_version_num && *node.sent_version_num >= version_num) {
    node.push_pending = false;
    return;
  }
  if (node.stream->bufferedBytes() > 0) {
    // Still writing an older snapshot to a slow reader: send only the newest once it drains.
    node.push_pending = true;
    return;
  }
  node.push_pending = false;
  node.nonce = newNonce();
  node.sent_version = version;
  node.sent_version_num = version_num;
  auto head = std::make_shared<const std::string>("{\"version\":" + nlohmann::json(version).dump() +
                                                  ",\"nonce\":\"" + node.nonce + "\",");
  node.stream->writeParts({std::move(head), body});
  node.sent_at = nowText();
  node.last_write = time_.now();
  ++node.pushes;
  ++pushes_;
}

void DiscoveryService::openStream(const std::string& node_id,
                                  const http::ResponderSharedPtr& responder) {
  Node& node = nodes_[node_id];
  node.id = node_id;
  if (node.stream != nullptr) {
    spdlog::info("discovery: node {} opened a new stream; closing its previous one from {}",
                 node_id, node.peer);
    node.stream->setCloseCallback(nullptr);
    node.stream->setDrainCallback(nullptr);
    node.stream->abort();
    node.stream.reset();
  }
  http::HeaderMap headers;
  headers.add("cache-control", "no-store");
  http::ResponseStreamSharedPtr stream =
      responder->startStream(200, "application/x-ndjson", std::move(headers));
  if (!stream->isOpen()) return;
  const uint64_t serial = next_serial_++;
  node.stream = stream;
  node.stream_serial = serial;
  node.peer = stream->peer();
  node.connected_since = nowText();
  node.push_pending = false;
  // A reconnecting proxy always gets the snapshot again, whatever it had before.
  node.sent_version.clear();
  node.sent_version_num.reset();
  node.nonce.clear();
  stream->setDeadPeerTimeout(std::max(config::Duration(1000), 3 * options_.heartbeat_interval));
  stream->setCloseCallback([this, node_id, serial] { onStreamClosed(node_id, serial); });
  stream->setDrainCallback([this, node_id, serial] {
    auto it = nodes_.find(node_id);
    if (it != nodes_.end() && it->second.stream_serial == serial && it->second.push_pending) {
      pushTo(it->second);
    }
  });
  spdlog::info("discovery: node {} connected from {}", node_id, node.peer);
  // The newest state at once, even if a debounced push is about to follow.
  pushTo(node);
}

void DiscoveryService::onStreamClosed(const std::string& node_id, uint64_t serial) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.stream_serial != serial) return;
  Node& node = it->second;
  node.stream.reset();
  node.push_pending = false;
  node.disconnected_at = time_.now();
  spdlog::info("discovery: node {} disconnected", node_id);
}

void DiscoveryService::onHeartbeatTimer() {
  const MonotonicTime now = time_.now();
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    Node& node = it->second;
    if (node.stream == nullptr) {
      if (now - node.disconnected_at > kForgetDisconnectedAfter) {
        it = nodes_.erase(it);
        continue;
      }
    } else if (now - node.last_write >= options_.heartbeat_interval / 2 &&
               node.stream->bufferedBytes() == 0) {
      // A busy socket needs no heartbeat: it is writing already, and TCP_USER_TIMEOUT catches a
      // peer that stops acknowledging.
      node.stream->write(heartbeat_line_);
      node.last_write = now;
    }
    ++it;
  }
}

DiscoveryService::AckResult DiscoveryService::ack(const nlohmann::json& body) {
  auto bad = [](std::string why) { return AckResult{400, {{"error", std::move(why)}}}; };
  if (!body.is_object())
    return bad("the body must be a JSON object {node, version, nonce, error?}");
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number_unsigned() || it->is_number_integer()) return it->dump();
    return std::nullopt;
  };
  const std::optional<std::string> node_id = str("node");
  const std::optional<std::string> version = str("version");
  const std::optional<std::string> nonce = str("nonce");
  if (!node_id || node_id->empty()) return bad("\"node\" (the node id, a string) is required");
  if (!version) return bad("\"version\" (the version being acknowledged) is required");
  if (!nonce) return bad("\"nonce\" (from the snapshot being acknowledged) is required");
  std::optional<std::string> error;
  if (auto it = body.find("error"); it != body.end() && !it->is_null()) {
    error = it->is_string() ? it->get<std::string>() : it->dump();
    if (error->empty()) error.reset();
  }
  auto it = nodes_.find(*node_id);
  if (it == nodes_.end()) {
    return {404, {{"error", "unknown node \"" + *node_id + "\"; open /v1/discovery first"}}};
  }
  Node& node = it->second;
  if (*nonce != node.nonce) {
    // Normal when a snapshot overtook the one being acknowledged; the ACK of the newer one
    // follows. Not an error, so not a 4xx the proxy would log as a refusal.
    return {200,
            {{"accepted", false},
             {"reason", "stale nonce: version " + node.sent_version +
                            " was sent since; this ACK/NACK is ignored"}}};
  }
  if (*version != node.sent_version) {
    return bad("version \"" + *version + "\" does not match the version sent with this nonce (\"" +
               node.sent_version + "\")");
  }
  if (error) {
    node.nacked_version = *version;
    node.last_error = *error;
    spdlog::warn("discovery: node {} refused version {} (NACK): {}", node.id, *version, *error);
  } else {
    node.acked_version = *version;
    node.acked_at = nowText();
    spdlog::debug("discovery: node {} applied version {} (ACK)", node.id, *version);
  }
  return {200, {{"accepted", true}}};
}

nlohmann::json DiscoveryService::nodesJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, node] : nodes_) {
    out.push_back({
        {"node_id", id},
        {"connected", node.stream != nullptr},
        {"acked_version", optionalJson(node.acked_version)},
        {"nacked_version", optionalJson(node.nacked_version)},
        {"last_error", optionalJson(node.last_error)},
        {"sent_version",
         node.sent_version.empty() ? nlohmann::json(nullptr) : nlohmann::json(node.sent_version)},
        {"peer", node.peer},
        {"connected_since", node.connected_since},
        {"sent_at", node.sent_at.empty() ? nlohmann::json(nullptr) : nlohmann::json(node.sent_at)},
        {"acked_at",
         node.acked_at.empty() ? nlohmann::json(nullptr) : nlohmann::json(node.acked_at)},
        {"pushes", node.pushes},
    });
  }
  return out;
}

size_t DiscoveryService::connectedCount() const {
  return static_cast<size_t>(std::count_if(
      nodes_.begin(), nodes_.end(), [](const auto& kv) { return kv.second.stream != nullptr; }));
}

std::string DiscoveryService::newNonce() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  uint64_t r = rng_();
  for (char& c : out) {
    c = kHex[r & 15];
    r >>= 4;
  }
  return out;
}

}  // namespace remora::control
