#include "control_process.h"

#include <signal.h>

namespace remora::control::test {

ControlProcess::ControlProcess(const itest::TempDir& dir, std::string name)
    : dir_(dir.path()), name_(std::move(name)) {}

ControlProcess::~ControlProcess() {
  if (process_ && process_->running()) {
    std::optional<int> code = terminate(Duration(5000));
    if (code && *code != 0) {
      ADD_FAILURE() << name_ << " exited with code " << *code << " on SIGTERM; log tail:\n"
                    << process_->logTail(40);
    }
  }
}

::testing::AssertionResult ControlProcess::start(const std::string& extra_yaml) {
  config_ = extra_yaml;
  // A port taken between freePort() and the bind makes the start fail: try fresh ones.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = itest::freePort();
    ::testing::AssertionResult r = launch();
    if (r || (process_ && process_->running())) return r;
    if (log().find("cannot listen") == std::string::npos) return r;
  }
  return ::testing::AssertionFailure() << "no free port for " << name_;
}

::testing::AssertionResult ControlProcess::restart() {
  if (process_ && process_->running()) terminate();
  return launch();
}

::testing::AssertionResult ControlProcess::launch() {
  const std::string yaml = "listen: 127.0.0.1:" + std::to_string(port_) +
                           "\nstate_file: " + statePath() + "\nlog_level: debug\n" + config_;
  const std::filesystem::path config_path = dir_ / (name_ + ".yaml");
  if (!itest::writeFileAtomic(config_path, yaml)) {
    return ::testing::AssertionFailure() << "cannot write " << config_path;
  }
  ++starts_;
  process_ = std::make_unique<itest::Process>(
      name_, REMORA_CONTROL_BIN, std::vector<std::string>{"--config", config_path.string()},
      dir_ / (name_ + ".log"));
  process_->setStopGrace(Duration(3000));
  std::string error;
  if (!process_->start(&error)) return ::testing::AssertionFailure() << error;
  const bool up = itest::waitFor(
      [&] {
        if (!process_->running()) return true;
        // An HTTPS control plane (a `tls:` key) cannot be probed in plain HTTP: its log says
        // when it listens.
        if (config_.find("tls:") != std::string::npos) {
          return process_->log().find("listening on https://") != std::string::npos;
        }
        itest::HttpClient c(port_, "127.0.0.1", Duration(1000));
        return c.get("/healthz").status == 200;
      },
      Duration(10000));
  if (!up || !process_->running()) {
    return ::testing::AssertionFailure()
           << name_ << " did not come up on port " << port_ << "; log:\n"
           << process_->logTail(30);
  }
  return ::testing::AssertionSuccess();
}

void ControlProcess::kill9() {
  if (process_) process_->kill9();
}

std::optional<int> ControlProcess::terminate(Duration timeout) {
  if (!process_) return std::nullopt;
  process_->signal(SIGTERM);
  return process_->waitExit(timeout);
}

JsonResponse ControlProcess::call(const std::string& method, const std::string& path,
                                  const std::string& body, const std::string& token) {
  itest::HttpClient client(port_, "127.0.0.1", Duration(15000));
  itest::Headers headers;
  if (!token.empty()) headers.add("authorization", "Bearer " + token);
  if (!body.empty()) headers.add("content-type", "application/json");
  itest::Response r = client.request(method, path, headers, body);
  JsonResponse out;
  out.status = r.status;
  out.raw = r.body;
  out.error = r.error;
  out.body = nlohmann::json::parse(r.body, nullptr, false);
  if (out.body.is_discarded()) out.body = nullptr;
  return out;
}

CtlResult runCtl(const itest::TempDir& dir, const std::string& server,
                 const std::vector<std::string>& args) {
  static int counter = 0;
  const std::filesystem::path log = dir / ("remoractl-" + std::to_string(++counter) + ".out");
  std::vector<std::string> full = {"--server", server};
  full.insert(full.end(), args.begin(), args.end());
  itest::Process p("remoractl", REMORACTL_BIN, full, log);
  CtlResult out;
  std::string error;
  if (!p.start(&error)) {
    out.output = error;
    return out;
  }
  out.exit_code = p.waitExit(Duration(20000));
  out.output = p.log();
  return out;
}

}  // namespace remora::control::test
