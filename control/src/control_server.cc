#include "control_server.h"

#include <spdlog/spdlog.h>

#include <csignal>

#include "remora/time_source.h"

namespace remora::control {

namespace {

std::string uvError(int rc) { return std::string(uv_err_name(rc)) + ": " + uv_strerror(rc); }

}  // namespace

ControlServer::ControlServer(ControlConfig config)
    : config_(std::move(config)), state_(RealTimeSource::instance(), config_.history_limit) {
  uv_loop_init(&loop_);
  // `data` doubles as "initialized" for shutdown().
  ttl_timer_.data = nullptr;
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) s->data = nullptr;
}

ControlServer::~ControlServer() {
  // run() closes every handle; a loop that never ran has none of ours.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

bool ControlServer::loadTokens() {
  if (config_.tokens_file.empty()) {
    auth_ = Authenticator();
    return true;
  }
  std::vector<std::string> errors;
  std::optional<std::vector<Token>> tokens = control::loadTokens(config_.tokens_file, errors);
  if (!tokens) {
    for (const std::string& e : errors) spdlog::error("{}", e);
    return false;
  }
  spdlog::info("auth: {} token(s) from {}; mutating calls need a bearer token", tokens->size(),
               config_.tokens_file);
  auth_ = Authenticator(std::move(*tokens));
  return true;
}

bool ControlServer::loadState() {
  if (!config_.state_file.empty()) {
    std::string error;
    std::optional<std::string> text = readStateFile(config_.state_file, error);
    if (!error.empty()) {
      spdlog::critical("{}; refusing to start with an empty state", error);
      return false;
    }
    if (text) {
      nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_discarded() || !state_.loadStateJson(j, error)) {
        spdlog::critical(
            "state file {} is unreadable ({}); refusing to start with an empty "
            "state (move the file away to start afresh)",
            config_.state_file, j.is_discarded() ? "not JSON" : error);
        return false;
      }
      spdlog::info("state file {}: version {}, {} service(s), {} instance(s), {} polic{}",
                   config_.state_file, state_.version(), state_.registry().services().size(),
                   state_.registry().instanceCount(), state_.policies().size(),
                   state_.policies().size() == 1 ? "y" : "ies");
    } else {
      spdlog::info("state file {} does not exist yet; starting empty", config_.state_file);
    }
  }
  // The file's clusters seed policies the state does not have yet: a policy changed through
  // the API survives a restart instead of being reset to the file's.
  bool seeded = false;
  for (const config::Cluster& c : config_.clusters) {
    if (state_.findPolicy(c.name) != nullptr) continue;
    state_.setPolicy(c);
    state_.commit(kActorConfigFile, "policy set " + c.name + " (from " + config_.source_file + ")");
    seeded = true;
  }
  if (seeded && !config_.state_file.empty()) {
    std::string error;
    if (!writeFileAtomic(config_.state_file, state_.serializeState(), error)) {
      spdlog::critical("cannot write the state file: {}", error);
      return false;
    }
  }
  return true;
}

int ControlServer::run() {
  signal(SIGPIPE, SIG_IGN);
  if (!loadTokens() || !loadState()) return 1;

  persister_ = std::make_unique<StatePersister>(&loop_, config_.state_file, [this] {
    // A copy is cheap next to serializing (1,000 instances: well under a millisecond versus
    // several), and the serializing then runs on the worker thread, off the loop.
    // The snapshot's text is built here: only the clusters that changed are serialized again
    // (ControlState::clustersText), far less than the copy costs.
    auto copy = std::make_shared<const ControlState>(state_);
    captured_clusters_[state_.version()] = std::make_shared<std::string>(state_.clustersText());
    return StatePersister::Capture{state_.version(), [copy] { return copy->serializeState(); }};
  });
  persister_->setDurableVersion(state_.version());
  persister_->setDurableCallback([this](uint64_t v) { onDurable(v); });
  discovery_ =
      std::make_unique<DiscoveryService>(&loop_, RealTimeSource::instance(), config_.discovery);
  api_ = std::make_unique<ControlApi>(ControlApi::Deps{
      state_, *persister_, *discovery_, auth_, config_.default_ttl, [this] { armTtlTimer(); },
      [this](uint64_t version) { onCommitted(version); }});
  http_ = std::make_unique<http::SimpleHttpServer>(
      &loop_,
      [this](const http::SimpleRequest& req, const http::ResponderSharedPtr& r) {
        api_->handle(req, r);
      },
      size_t{4} << 20);

  uv_timer_init(&loop_, &ttl_timer_);
  ttl_timer_.data = this;
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  if (!loadTls()) {
    shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    return 1;
  }
  int rc = http_->listen(config_.listen);
  if (rc != 0) {
    spdlog::critical("cannot listen on {}: {}; free the port or change \"listen\"",
                     config_.listen.str(), uvError(rc));
    shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    return 1;
  }
  uv_signal_start(&sigterm_, &ControlServer::onSignal, SIGTERM);
  uv_signal_start(&sigint_, &ControlServer::onSignal, SIGINT);
  uv_signal_start(&sighup_, &ControlServer::onSignal, SIGHUP);
  discovery_->publish(state_.version(), state_.clustersText(), /*immediate=*/true);
  armTtlTimer();
  spdlog::info("remora-control listening on {}://{} (state version {}, auth {})",
               config_.tls ? "https" : "http", config_.listen.str(), state_.version(),
               auth_.enabled() ? "on" : "off");
  uv_run(&loop_, UV_RUN_DEFAULT);
  spdlog::info("remora-control stopped at version {}", state_.version());
  return 0;
}

bool ControlServer::loadTls() {
  if (!config_.tls) return true;
  std::string error;
  tls::ServerContextConstSharedPtr ctx = tls_contexts_.server(*config_.tls, error);
  if (!ctx) {
    spdlog::critical("{}", config::ConfigError{config_.tls->loc, "tls: " + error}.format());
    return false;
  }
  http_->setTls(std::move(ctx));  // new connections; established ones keep theirs
  return true;
}

void ControlServer::armTtlTimer() {
  if (stopping_) return;
  std::optional<MonotonicTime> deadline = state_.registry().nextDeadline();
  if (!deadline) {
    uv_timer_stop(&ttl_timer_);
    return;
  }
  const MonotonicTime now = RealTimeSource::instance().now();
  const uint64_t ms =
      *deadline <= now ? 0
                       : static_cast<uint64_t>(
                             std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count());
  uv_timer_start(
      &ttl_timer_, [](uv_timer_t* t) { static_cast<ControlServer*>(t->data)->onTtlTimer(); }, ms,
      0);
}

void ControlServer::onTtlTimer() {
  std::vector<Registry::Transition> transitions = state_.registry().expire();
  for (const Registry::Transition& t : transitions) {
    const std::string who = t.service + "/" + t.id;
    std::string change = t.removed ? "expire " + who + " removed (no heartbeat for " +
                                         config::formatDuration(kRemoveAfterTtls * t.ttl) + ")"
                                   : "expire " + who + " " + std::string(toString(t.from)) +
                                         " -> UNKNOWN (no heartbeat for " +
                                         config::formatDuration(t.ttl) + ")";
    spdlog::info("{}", change);
    state_.commit(kActorTtl, std::move(change));
  }
  if (!transitions.empty()) onCommitted(state_.version());
  armTtlTimer();
}

void ControlServer::onCommitted(uint64_t version) {
  // Discovery first: in memory-only mode the persister reports durability synchronously.
  discovery_->noteChange(version);
  persister_->changed(version);
}

void ControlServer::onDurable(uint64_t version) {
  auto it = captured_clusters_.find(version);
  // In memory-only mode nothing was captured, and the state is exactly `version` right now.
  const std::string clusters = it != captured_clusters_.end() ? *it->second : state_.clustersText();
  captured_clusters_.erase(captured_clusters_.begin(), captured_clusters_.upper_bound(version));
  discovery_->publish(version, clusters);
}

void ControlServer::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  if (http_) http_->close();
  if (discovery_) discovery_->stop();
  // An in-flight write completes (and, if more changes are pending, the last one is written)
  // before the loop runs dry.
  if (persister_) persister_->close();
  if (ttl_timer_.data == this) {
    uv_close(reinterpret_cast<uv_handle_t*>(&ttl_timer_), nullptr);
  }
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    if (s->data == this) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
}

void ControlServer::onSignal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<ControlServer*>(handle->data);
  if (signum == SIGHUP) {
    spdlog::info("SIGHUP: reloading the tokens file{}", self->config_.tls ? " and TLS files" : "");
    if (!self->loadTokens()) spdlog::error("tokens file refused; keeping the previous tokens");
    if (!self->loadTls()) spdlog::error("TLS files refused; keeping the previous certificate");
    return;
  }
  spdlog::info("{}: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  self->shutdown();
}

}  // namespace remora::control
