#include "fake_upstream.h"

#include <signal.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "http_client.h"

namespace remora::itest {

const char* fakeUpstreamBinary() {
  const char* env = std::getenv("REMORA_ITEST_FAKE_UPSTREAM");
  return env != nullptr && *env != '\0' ? env : FAKE_UPSTREAM_BIN;
}

FakeUpstream::FakeUpstream(const TempDir& dir, std::string name)
    : log_path_(dir / ("fake-upstream-" + name + ".log")), name_(std::move(name)) {}

FakeUpstream::~FakeUpstream() {
  if (!process_ || !process_->running()) return;
  std::optional<int> code = terminate(Duration(5000));
  if (code && *code != 0) {
    ADD_FAILURE() << "fake-upstream " << name_ << " exited with code " << *code
                  << " on SIGTERM (a sanitizer report?); log tail:\n"
                  << process_->logTail(40);
  }
}

::testing::AssertionResult FakeUpstream::start(Duration timeout) { return launch(0, timeout); }

::testing::AssertionResult FakeUpstream::restart(Duration timeout) {
  if (port_ == 0) return ::testing::AssertionFailure() << "restart() before start()";
  return launch(port_, timeout);
}

::testing::AssertionResult FakeUpstream::launch(uint16_t port, Duration timeout) {
  if (process_) process_->kill9();
  // A fresh log per run, so the "listening on" line we look for is this run's.
  std::error_code ec;
  std::filesystem::remove(log_path_, ec);
  process_ = std::make_unique<Process>(
      "fake-upstream " + name_, fakeUpstreamBinary(),
      std::vector<std::string>{"--port", std::to_string(port), "--name", name_}, log_path_);
  std::string error;
  if (!process_->start(&error)) return ::testing::AssertionFailure() << error;
  const std::string prefix = "listening on 127.0.0.1:";
  uint16_t found = 0;
  bool ok = waitFor(
      [&] {
        std::string log = readFile(log_path_);
        size_t pos = log.find(prefix);
        if (pos == std::string::npos) return false;
        size_t eol = log.find('\n', pos);
        if (eol == std::string::npos) return false;
        found = static_cast<uint16_t>(
            std::stoi(log.substr(pos + prefix.size(), eol - pos - prefix.size())));
        return true;
      },
      timeout);
  if (!ok || found == 0) {
    return ::testing::AssertionFailure()
           << "fake-upstream " << name_ << " did not report its port; log:\n"
           << process_->logTail();
  }
  port_ = found;
  return ::testing::AssertionSuccess();
}

std::optional<UpstreamStats> FakeUpstream::stats() const {
  HttpClient client(port_, "127.0.0.1", Duration(5000));
  Response r = client.get("/__stats");
  if (!r.ok() || r.status != 200) return std::nullopt;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  UpstreamStats s;
  s.connections = j.value("connections", 0ull);
  s.requests = j.value("requests", 0ull);
  s.active = j.value("active", 0ull);
  s.accepted = j.value("accepted", 0ull);
  s.open_connections = j.value("open_connections", 0ull);
  s.healthz = j.value("healthz", 0ull);
  return s;
}

bool FakeUpstream::resetStats() const {
  HttpClient client(port_, "127.0.0.1", Duration(5000));
  return client.post("/__reset_stats", "").status == 200;
}

bool FakeUpstream::control(std::string_view body) const {
  HttpClient client(port_, "127.0.0.1", Duration(5000));
  return client.post("/__control", body).status == 200;
}

void FakeUpstream::kill9() {
  if (process_) process_->kill9();
}

std::optional<int> FakeUpstream::terminate(Duration timeout) {
  if (!process_) return std::nullopt;
  process_->signal(SIGTERM);
  return process_->waitExit(timeout);
}

}  // namespace remora::itest
