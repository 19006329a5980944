#pragma once

// remora-control's process: one libuv loop that serves the REST API and the discovery streams,
// runs the TTL sweep, and persists the state (writes on libuv's thread pool, see persistence.h).
//
// How a change flows:
//   REST call -> ControlState (version + 1, history) -> StatePersister (fsync, group commit)
//     -> the call is answered -> DiscoveryService::publish(version) -> debounce -> push.
// Only durable versions are pushed, so a proxy never sees a version that a crash could undo and
// versions keep increasing across restarts.

#include <uv.h>

#include <map>
#include <memory>
#include <string>

#include "api.h"
#include "control_config.h"
#include "discovery.h"
#include "persistence.h"
#include "state.h"

namespace remora::control {

class ControlServer {
 public:
  explicit ControlServer(ControlConfig config);
  ~ControlServer();

  // Loads the state, listens, and runs until SIGTERM/SIGINT. Returns the exit code.
  int run();

 private:
  bool loadState();
  bool loadTokens();
  // (Re)loads config_.tls into the HTTP server; false (logged) if a file is bad.
  bool loadTls();
  void armTtlTimer();
  void onTtlTimer();
  void onCommitted(uint64_t version);
  void onDurable(uint64_t version);
  void shutdown();
  static void onSignal(uv_signal_t* handle, int signum);

  uv_loop_t loop_;
  ControlConfig config_;
  ControlState state_;
  Authenticator auth_;
  std::unique_ptr<StatePersister> persister_;
  std::unique_ptr<DiscoveryService> discovery_;
  std::unique_ptr<ControlApi> api_;
  std::unique_ptr<http::SimpleHttpServer> http_;
  tls::ContextCache tls_contexts_;
  // The clusters (serialized JSON array) as they were when each in-flight write captured the
  // state, so that what is pushed is exactly what is on disk.
  std::map<uint64_t, std::shared_ptr<std::string>> captured_clusters_;
  uv_timer_t ttl_timer_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sighup_;
  bool stopping_ = false;
};

}  // namespace remora::control
