#pragma once

// Discovery, state of the world (contract section 5; protocol in control/README.md).
//
// A proxy opens `GET /v1/discovery?node=ID`; the answer is a chunked stream of JSON lines:
//   {"version":"42","nonce":"9f2c...","clusters":[...every cluster...]}   a snapshot
//   {"heartbeat":true}                                                     on an idle stream
// The current snapshot goes out at once on (re)connect; a change after a quiet period goes out as
// soon as it is durable, and the changes that follow it within the debounce window are coalesced
// (debouncer.h). The proxy
// answers each snapshot with `POST /v1/discovery/ack {"node","version","nonce","error"?}`.
//
// Cheap with many proxies: a snapshot's clusters are serialized once and shared by every stream
// (only the small version/nonce head is per stream); a stream whose socket is still busy with an
// older snapshot skips to the newest one when it drains instead of queueing every version.

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>

#include "control_config.h"
#include "debouncer.h"
#include "http/simple_server.h"
#include "remora/time_source.h"

namespace remora::control {

class DiscoveryService {
 public:
  DiscoveryService(uv_loop_t* loop, const TimeSource& time, DiscoveryOptions options);
  ~DiscoveryService();
  DiscoveryService(const DiscoveryService&) = delete;
  DiscoveryService& operator=(const DiscoveryService&) = delete;

  // The state changed to `version` (not durable yet): starts or extends the debounce window.
  void noteChange(uint64_t version);
  // A new version of the clusters, now durable: `clusters_json` is the serialized JSON array in
  // the proxy's schema. `immediate` skips the debounce (the first snapshot at startup).
  void publish(uint64_t version, const std::string& clusters_json, bool immediate = false);

  // Serves `GET /v1/discovery?node=ID`. A node that opens a second stream replaces the first.
  void openStream(const std::string& node_id, const http::ResponderSharedPtr& responder);

  struct AckResult {
    int status;
    nlohmann::json body;
  };
  // `POST /v1/discovery/ack`; the body is already parsed.
  AckResult ack(const nlohmann::json& body);

  // `GET /v1/nodes`.
  nlohmann::json nodesJson() const;

  // Closes every stream (shutdown) and the timers.
  void stop();

  uint64_t pushes() const { return pushes_; }
  size_t connectedCount() const;
  const std::string& currentVersion() const { return version_; }

 private:
  struct Node {
    std::string id;
    http::ResponseStreamSharedPtr stream;  // null while disconnected
    uint64_t stream_serial = 0;
    std::string peer;
    std::string sent_version;  // version of the last snapshot sent
    std::optional<uint64_t> sent_version_num;
    std::string nonce;  // nonce of the last snapshot sent
    std::optional<std::string> acked_version;
    std::optional<std::string> nacked_version;
    std::optional<std::string> last_error;
    std::string connected_since;
    // Wall times (UTC, ms) of the last snapshot written to the stream and of the ACK that set
    // acked_version: how long a change took to reach this proxy (perf/bench_control.py).
    std::string sent_at;
    std::string acked_at;
    MonotonicTime last_write;
    MonotonicTime disconnected_at;
    bool push_pending = false;  // a newer snapshot waits for the socket to drain
    uint64_t pushes = 0;
  };

  void armPushTimer();
  // Pushes the pending snapshot if the debounce allows it now.
  void maybePush();
  void pushAll();
  // Sends the newest snapshot to `node` unless it has it (or a newer one) already.
  void pushTo(Node& node);
  void pushTo(Node& node, uint64_t version_num, const std::string& version,
              const std::shared_ptr<const std::string>& body);
  void onHeartbeatTimer();
  void onStreamClosed(const std::string& node_id, uint64_t serial);
  std::string newNonce();

  uv_loop_t* loop_;
  const TimeSource& time_;
  DiscoveryOptions options_;
  Debouncer debouncer_;
  uv_timer_t* push_timer_ = nullptr;
  uv_timer_t* heartbeat_timer_ = nullptr;
  std::map<std::string, Node> nodes_;
  // The pushed snapshot: its version and its `"clusters":[...]}` + "\n" tail, shared by every
  // stream; and the one published since, waiting for the debounce.
  uint64_t version_num_ = 0;
  std::string version_;
  std::shared_ptr<const std::string> clusters_body_;
  uint64_t pending_version_num_ = 0;
  std::string pending_version_;
  std::shared_ptr<const std::string> pending_body_;
  std::shared_ptr<const std::string> heartbeat_line_;
  uint64_t latest_change_ = 0;  // newest version noteChange() saw
  uint64_t next_serial_ = 1;
  uint64_t pushes_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace remora::control
