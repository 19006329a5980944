#include "server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "remora/config/json.h"
#include "remora/config/parser.h"
#include "uv_util.h"

namespace remora {

std::string createListenSockets(const config::Address& address, size_t count,
                                std::vector<int>& fds) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string err = resolveAddress(address, ss, len);
  if (!err.empty()) return err;
  for (size_t i = 0; i < count; ++i) {
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    std::string why;
    if (fd < 0) {
      why = std::string("socket: ") + std::strerror(errno);
    } else if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
               ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      why = std::string("setsockopt: ") + std::strerror(errno);
    } else if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      why = std::string("bind: ") + std::strerror(errno);
    } else if (::listen(fd, 4096) != 0) {
      why = std::string("listen: ") + std::strerror(errno);
    }
    if (!why.empty()) {
      if (fd >= 0) ::close(fd);
      for (int f : fds) ::close(f);
      fds.clear();
      return "cannot listen on " + address.str() + ": " + why;
    }
    fds.push_back(fd);
  }
  return {};
}

namespace {

// A config error without a position (built field by field: GCC 12 misreports brace-initialised
// nested aggregates as maybe-uninitialized).
config::ConfigError configError(std::string source, std::string reason) {
  config::ConfigError e;
  e.loc.file = std::move(source);
  e.reason = std::move(reason);
  return e;
}

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) { uv_loop_init(&loop_); }

Server::~Server() { uv_loop_close(&loop_); }

config::LoadResult Server::loadConfig() {
  config::LoadResult result = config::loadFile(options_.config_path);
  if (!result.ok()) return result;
  // Command-line overrides win over the file.
  if (!options_.node_id.empty() || !options_.control_plane.empty()) {
    auto copy = std::make_shared<config::Config>(*result.config);
    if (!options_.node_id.empty()) copy->node_id = options_.node_id;
    if (!options_.control_plane.empty()) {
      auto addr = config::parseAddress(options_.control_plane);
      if (!addr) {
        result.config = nullptr;
        result.errors.push_back(configError(
            "--control-plane", "expected host:port, got \"" + options_.control_plane + "\""));
        return result;
      }
      config::ControlPlane cp = copy->control_plane.value_or(config::ControlPlane{});
      cp.address = *addr;
      copy->control_plane = cp;
    }
    result.config = copy;
  }
  return result;
}

bool Server::reload(bool initial) {
  config::LoadResult result = loadConfig();
  if (!result.ok()) {
    for (const auto& e : result.errors) spdlog::error("config: {}", e.format());
    spdlog::error("{} rejected ({} error{}); {}", options_.config_path, result.errors.size(),
                  result.errors.size() == 1 ? "" : "s",
                  initial ? "fix the file and start again"
                          : "the running config (version " + version_label_ +
                                ") stays active; fix the file and send SIGHUP again");
    stats_.recordConfigUpdate("file", false);
    return false;
  }
  // Clusters pushed by the control plane stay in force across file reloads.
  std::string error;
  config::ConfigConstSharedPtr merged = mergePushedClusters(result.config, pushed_clusters_, error);
  if (merged) error = apply(merged, pushed_version_.empty() ? "file" : "control-plane", initial);
  if (!error.empty()) {
    spdlog::error("{} rejected: {}; {}", options_.config_path, error,
                  initial ? "fix it and start again" : "the running config stays active");
    stats_.recordConfigUpdate("file", false);
    return false;
  }
  file_config_ = result.config;
  if (pushed_version_.empty()) version_label_ = std::to_string(version_);
  stats_.recordConfigUpdate("file", true);
  spdlog::info("config version {} active from {}: {} listener(s), {} cluster(s), {} worker(s)",
               version_label_, options_.config_path, current_->config().listeners.size(),
               current_->config().clusters.size(), workers_.size());
  return true;
}


std::string Server::apply(const config::ConfigConstSharedPtr& config, const std::string& source,
                          bool initial) {
  const config::Config& cfg = *config;
  size_t nworkers = initial ? (cfg.workers != 0 ? cfg.workers
                                                : std::max(1u, std::thread::hardware_concurrency()))
                            : workers_.size();
  if (!initial && current_) {
    const config::Config& old = current_->config();
    if (cfg.workers != old.workers) {
      spdlog::warn("config: `workers` changed ({} -> {}); this takes a restart, keeping {}",
                   old.workers, cfg.workers, workers_.size());
    }
    if (!(cfg.admin.address == old.admin.address)) {
      spdlog::warn("config: admin address changed; this takes a restart, keeping {}",
                   old.admin.address.str());
    }
  }

  // Everything that can fail comes before anything is applied.
  // Open sockets for listener addresses that are new in this config, one per worker.
  std::map<std::string, std::vector<int>> new_sockets;
  std::map<std::string, std::string> names;
  auto close_new_sockets = [&] {
    for (auto& [k, v] : new_sockets) {
      for (int fd : v) ::close(fd);
    }
  };
  for (const auto& l : cfg.listeners) {
    std::string key = l.address.str();
    names[key] = l.name;
    if (listener_addresses_.contains(key)) continue;
    std::vector<int> fds;
    std::string err = createListenSockets(l.address, nworkers, fds);
    if (!err.empty()) {
      close_new_sockets();
      return "listener \"" + l.name + "\": " + err;
    }
    new_sockets[key] = std::move(fds);
  }
  std::shared_ptr<AccessLogger> access_log;
  if (initial && cfg.access_log) {
    std::string err;
    access_log = AccessLogger::open(cfg.access_log->path, err);
    if (!access_log) {
      close_new_sockets();
      return err;
    }
  }
  std::string error;
  SnapshotConstSharedPtr snap =
      Snapshot::build(config, version_ + 1, source, stats_, runtime_, error, current_.get());
  if (!snap) {
    close_new_sockets();
    return error;
  }

  if (initial) {
    access_log_ = std::move(access_log);
    for (size_t i = 0; i < nworkers; ++i) {
      workers_.push_back(std::make_unique<Worker>(i, access_log_));
    }
    for (auto& w : workers_) w->start();
  }
  ++version_;
  current_ = snap;
  // A rotated control-plane certificate applies from the next discovery connection on.
  if (discovery_) discovery_->setTls(snap->controlPlaneTls());
  listener_addresses_.clear();
  for (const auto& [key, name] : names) listener_addresses_[key] = 1;
  for (size_t i = 0; i < workers_.size(); ++i) {
    std::vector<ListenerSocket> sockets;
    for (auto& [key, fds] : new_sockets) sockets.push_back({names[key], key, fds[i]});
    Worker* w = workers_[i].get();
    w->post([w, snap, sockets = std::move(sockets)]() mutable {
      w->applySnapshot(snap, std::move(sockets));
    });
  }
  updateHealthCheckers();
  stats_.configVersion().set(static_cast<int64_t>(version_));
  return {};
}

std::string Server::onDiscoveryUpdate(const DiscoveryClient::Update& update) {
  std::vector<config::ConfigError> errors;
  // Unchanged clusters are not parsed again (PushedClusters, discovery_client.h).
  std::vector<config::Cluster> clusters = pushed_parser_.parse(update, errors);
  std::string error;
  config::ConfigConstSharedPtr merged;
  if (errors.empty()) {
    merged = mergePushedClusters(file_config_, clusters, error);
  } else {
    error = errors.front().format();
    for (size_t i = 1; i < errors.size(); ++i) error += "; " + errors[i].format();
  }
  if (merged) error = apply(merged, "control-plane", false);
  if (!error.empty()) {
    spdlog::error("control plane snapshot version {} refused (NACK): {}; keeping config version "
                  "{}",
                  update.version, error, version_label_);
    stats_.recordConfigUpdate("control-plane", false);
    return error;
  }
  pushed_clusters_ = std::move(clusters);
  pushed_version_ = update.version;
  version_label_ = update.version;
  // Prometheus wants a number: the control plane's version when it is one.
  char* end = nullptr;
  unsigned long long v = std::strtoull(update.version.c_str(), &end, 10);
  if (end != nullptr && *end == '\0' && !update.version.empty()) {
    stats_.configVersion().set(static_cast<int64_t>(v));
  }
  first_snapshot_acked_ = true;
  stats_.recordConfigUpdate("control-plane", true);
  spdlog::info("control plane snapshot version {} applied (ACK): {} cluster(s) pushed, {} in "
               "total",
               update.version, pushed_clusters_.size(), current_->config().clusters.size());
  return {};
}

int Server::run() {
  signal(SIGPIPE, SIG_IGN);
  if (!reload(true)) return 1;
  const config::Config& cfg = current_->config();

  admin_ = std::make_unique<http::SimpleHttpServer>(
      &loop_, [this](const http::SimpleRequest& req) { return handleAdmin(req); });
  int rc = admin_->listen(cfg.admin.address);
  if (rc != 0) {
    spdlog::error("cannot listen on admin address {}: {}; free the port or change "
                  "admin.address",
                  cfg.admin.address.str(), uvError(rc));
    exit_code_ = 1;
    shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    return exit_code_;
  }
  for (auto* sig : {&sighup_, &sigterm_, &sigint_}) {
    uv_signal_init(&loop_, sig);
    sig->data = this;
  }
  uv_signal_start(&sighup_, &Server::onSignal, SIGHUP);
  uv_signal_start(&sigterm_, &Server::onSignal, SIGTERM);
  uv_signal_start(&sigint_, &Server::onSignal, SIGINT);
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  handles_ready_ = true;

  for (const auto& l : cfg.listeners) {
    spdlog::info("listener {} on {}://{}{}", l.name, l.tls ? "https" : "http", l.address.str(),
                 l.tls && !l.tls->client_ca_file.empty() ? " (mTLS: client certificates required)"
                                                         : "");
  }
  if (cfg.control_plane) {
    std::string node = cfg.node_id;
    discovery_ = std::make_unique<DiscoveryClient>(
        &loop_, cfg.control_plane->address, node, cfg.control_plane->token_file,
        [this](const DiscoveryClient::Update& u) { return onDiscoveryUpdate(u); });
    discovery_->setTls(current_->controlPlaneTls());
    discovery_->start();
    spdlog::info("control plane {}: subscribing as node {}; /ready answers 503 until the first "
                 "snapshot is applied",
                 cfg.control_plane->address.str(), node);
  }
  spdlog::info("admin API on http://{} (/ready /stats /config /clusters)",
               cfg.admin.address.str());
  uv_run(&loop_, UV_RUN_DEFAULT);
  return exit_code_;
}

void Server::onSignal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<Server*>(handle->data);
  if (signum == SIGHUP) {
    if (self->draining_) return;
    spdlog::info("SIGHUP: reloading {}", self->options_.config_path);
    self->reload(false);
    return;
  }
  if (self->draining_) {
    spdlog::warn("second {} while draining: stopping now", signum == SIGINT ? "SIGINT" : "SIGTERM");
    self->shutdown();
    return;
  }
  self->startDrain(signum == SIGINT ? "SIGINT" : "SIGTERM");
}

void Server::startDrain(const char* why) {
  draining_ = true;
  auto timeout = current_ ? current_->config().drain_timeout : std::chrono::milliseconds(30000);
  drain_deadline_ = std::chrono::steady_clock::now() + timeout;
  spdlog::info("{}: draining: no new connections; waiting up to {}ms for in-flight requests", why,
               timeout.count());
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->post([wp] { wp->drain(); });
  }
  uv_timer_start(
      &drain_timer_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->checkDrained(); }, 20, 20);
}

void Server::checkDrained() {
  size_t active = 0;
  for (auto& w : workers_) active += w->activeConnections();
  if (active == 0) {
    spdlog::info("drained: all connections closed");
    shutdown();
  } else if (std::chrono::steady_clock::now() >= drain_deadline_) {
    spdlog::warn("drain_timeout reached with {} connection(s) still open; closing them", active);
    shutdown();
  }
}

void Server::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->post([wp] { wp->stop(); });
  }
  for (auto& w : workers_) w->join();
  workers_.clear();
  if (admin_) admin_->close();
  if (discovery_) discovery_->stop();
  health_checkers_.clear();
  if (handles_ready_) {
    for (auto* h : {reinterpret_cast<uv_handle_t*>(&sighup_),
                    reinterpret_cast<uv_handle_t*>(&sigterm_),
                    reinterpret_cast<uv_handle_t*>(&sigint_),
                    reinterpret_cast<uv_handle_t*>(&drain_timer_)}) {
      uv_close(h, nullptr);
    }
  }
}

void Server::updateHealthCheckers() {
  std::map<std::string, ClusterHealthCheck> next;
  for (const auto& c : current_->clusters()) {
    if (!c->config->health_check) {
      // No checks: endpoints count as healthy (a check removed by a reload must not leave an
      // endpoint stuck out of rotation).
      for (const auto& e : c->endpoints()) e.runtime->healthy.store(true);
      continue;
    }
    ClusterHealthCheck hc;
    if (auto it = health_checkers_.find(c->name()); it != health_checkers_.end()) {
      hc = std::move(it->second);
      health_checkers_.erase(it);
    } else {
      hc.checker = std::make_unique<HealthChecker>(&loop_, c->name(), nullptr);
    }
    // A shared endpoint set means the same endpoints and the same health_check settings.
    if (hc.endpoints != c->endpoint_set) {
      // The callback resolves the endpoint in the snapshot that is current when it fires.
      std::map<std::string, EndpointRuntimeSharedPtr> runtimes;
      for (const auto& e : c->endpoints()) runtimes[e.key] = e.runtime;
      hc.checker->setCallback([runtimes](const std::string& key, bool healthy) {
        auto r = runtimes.find(key);
        if (r != runtimes.end()) r->second->healthy.store(healthy);
      });
      hc.checker->update(*c->config->health_check, c->endpoints());
      hc.endpoints = c->endpoint_set;
    }
    next[c->name()] = std::move(hc);
  }
  health_checkers_ = std::move(next);  // checkers of removed clusters stop here
}

std::string Server::renderBreakerStats() const {
  std::string out =
      "# HELP remora_circuit_breaker_state Circuit breaker state per endpoint (0 closed, 1 open, "
      "2 half-open).\n# TYPE remora_circuit_breaker_state gauge\n";
  if (!current_) return out;
  for (const auto& c : current_->clusters()) {
    for (const auto& e : c->endpoints()) {
      int state = e.breaker ? static_cast<int>(e.breaker->state()) : 0;
      out += "remora_circuit_breaker_state{cluster=\"" + c->name() + "\",endpoint=\"" + e.key +
             "\"} " + std::to_string(state) + "\n";
    }
  }
  out +=
      "# HELP remora_endpoint_healthy 1 if the endpoint passes its health checks (or has none).\n"
      "# TYPE remora_endpoint_healthy gauge\n";
  for (const auto& c : current_->clusters()) {
    for (const auto& e : c->endpoints()) {
      out += "remora_endpoint_healthy{cluster=\"" + c->name() + "\",endpoint=\"" + e.key +
             "\"} " + (e.runtime->healthy.load() ? "1" : "0") + "\n";
    }
  }
  return out;
}

http::SimpleResponse Server::handleAdmin(const http::SimpleRequest& req) {
  using http::SimpleResponse;
  if (req.method != "GET" && req.method != "HEAD") {
    return SimpleResponse::text(405, "the admin API only answers GET\n");
  }
  if (req.path == "/ready") {
    if (draining_) return SimpleResponse::text(503, "draining\n");
    if (!current_) return SimpleResponse::text(503, "no active config\n");
    if (current_->config().control_plane && !first_snapshot_acked_) {
      return SimpleResponse::text(503, "waiting for the first control-plane snapshot\n");
    }
    return SimpleResponse::text(200, "ready\n");
  }
  if (req.path == "/stats") {
    SimpleResponse r =
        SimpleResponse::text(200, stats_.renderPrometheus() + renderBreakerStats());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  if (req.path == "/config") {
    nlohmann::json j = {{"version", version_label_},
                        {"source", current_->source()},
                        {"file", options_.config_path},
                        {"control_plane_connected", discovery_ && discovery_->connected()},
                        {"config", config::toJson(current_->config())}};
    return SimpleResponse::json(200, j.dump(2) + "\n");
  }
  if (req.path == "/clusters") {
    nlohmann::json clusters = nlohmann::json::array();
    for (const auto& c : current_->clusters()) {
      nlohmann::json eps = nlohmann::json::array();
      for (const auto& e : c->endpoints()) {
        static const char* kStates[] = {"closed", "open", "half-open"};
        int state = e.breaker ? static_cast<int>(e.breaker->state()) : 0;
        eps.push_back({{"address", e.key},
                       {"weight", e.config.weight},
                       {"health", e.runtime->healthy.load() ? "healthy" : "unhealthy"},
                       {"circuit_breaker", kStates[state]},
                       {"active_requests", e.runtime->active_requests.load()}});
      }
      clusters.push_back({{"name", c->name()},
                          {"lb_policy", std::string(config::toString(c->config->lb_policy))},
                          {"active_requests", c->stats->upstream_requests_active.value()},
                          {"endpoints", eps}});
    }
    return SimpleResponse::json(200, nlohmann::json{{"clusters", clusters}}.dump(2) + "\n");
  }
  if (req.path == "/" || req.path.empty()) {
    return SimpleResponse::text(200,
                                "remora admin: /ready /stats /config /clusters\n");
  }
  return SimpleResponse::text(404, "unknown admin path " + req.path +
                                       "; try /ready /stats /config /clusters\n");
}

}  // namespace remora
