#pragma once

// The main thread: loads and validates the config, owns the listening sockets, publishes snapshots
// to the workers, serves the admin API, and handles signals (SIGHUP reload, SIGTERM/SIGINT drain).

#include <uv.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "access_log.h"
#include "discovery_client.h"
#include "health_checker.h"
#include "runtime.h"
#include "http/simple_server.h"
#include "snapshot.h"
#include "stats.h"
#include "worker.h"

namespace remora {

struct ServerOptions {
  std::string config_path;
  std::string log_level;      // overrides the file when set
  std::string node_id;        // overrides the file when set
  std::string control_plane;  // overrides the file when set ("host:port")
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Runs until drained. Returns the process exit code.
  int run();

 private:
  // Loads the config file and applies it. On failure logs why, counts a NACK, and keeps the
  // running config. Returns whether it was applied.
  bool reload(bool initial);
  config::LoadResult loadConfig();
  // Makes `config` the running config: sockets, snapshot, workers. Returns "" or why it was
  // refused (then nothing changed).
  std::string apply(const config::ConfigConstSharedPtr& config, const std::string& source,
                    bool initial);
  // A control-plane snapshot: "" = applied (ACK), otherwise why not (NACK).
  std::string onDiscoveryUpdate(const DiscoveryClient::Update& update);
  http::SimpleResponse handleAdmin(const http::SimpleRequest& req);
  void updateHealthCheckers();
  std::string renderBreakerStats() const;
  void startDrain(const char* why);
  void checkDrained();
  void shutdown();

  static void onSignal(uv_signal_t* handle, int signum);

  ServerOptions options_;
  uv_loop_t loop_;
  uv_signal_t sighup_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_timer_t drain_timer_;
  StatsStore stats_;
  RuntimeRegistry runtime_{stats_, RealTimeSource::instance()};
  struct ClusterHealthCheck {
    std::unique_ptr<HealthChecker> checker;
    EndpointSetConstSharedPtr endpoints;  // what it checks: unchanged set, nothing to redo
  };
  std::map<std::string, ClusterHealthCheck> health_checkers_;  // by cluster
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<http::SimpleHttpServer> admin_;
  std::shared_ptr<AccessLogger> access_log_;
  SnapshotConstSharedPtr current_;
  config::ConfigConstSharedPtr file_config_;       // last good file config
  std::vector<config::Cluster> pushed_clusters_;   // last good control-plane clusters
  PushedClusters pushed_parser_;                   // parses pushes, skipping unchanged clusters
  std::string pushed_version_;                     // "" until a snapshot was applied
  std::string version_label_ = "0";                // what /config shows as the version
  bool first_snapshot_acked_ = false;
  std::unique_ptr<DiscoveryClient> discovery_;
  std::map<std::string, int> listener_addresses_;  // live listener address -> count (always 1)
  uint64_t version_ = 0;
  bool draining_ = false;
  bool stopped_ = false;
  bool handles_ready_ = false;  // signal handlers and the drain timer are initialised
  std::chrono::steady_clock::time_point drain_deadline_;
  int exit_code_ = 0;
};

// Creates `count` listening sockets bound to `address` with SO_REUSEPORT (one per worker).
// Returns an empty string and fills `fds`, or the reason it failed (and closes what it opened).
std::string createListenSockets(const config::Address& address, size_t count,
                                std::vector<int>& fds);

}  // namespace remora
