#pragma once

// Runs the real `fake-upstream` binary (tests/fake_upstream) as a child process.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "process.h"
#include "util.h"

namespace remora::itest {

// The fake-upstream binary: $REMORA_ITEST_FAKE_UPSTREAM if set, else the one built with the
// tests (FAKE_UPSTREAM_BIN).
const char* fakeUpstreamBinary();

// GET /__stats of a fake upstream. /__ requests are never counted.
struct UpstreamStats {
  uint64_t connections = 0;       // connections that carried >= 1 request since the last reset
  uint64_t requests = 0;          // requests received since the last reset (/healthz included)
  uint64_t active = 0;            // requests being handled right now (e.g. delayed or hanging)
  uint64_t accepted = 0;          // TCP connections accepted since the last reset
  uint64_t open_connections = 0;  // connections open right now (the stats one included)
  uint64_t healthz = 0;           // GET /healthz requests among `requests`
};

class FakeUpstream {
 public:
  // The log goes to <dir>/fake-upstream-<name>.log.
  FakeUpstream(const TempDir& dir, std::string name);
  // SIGTERM (SIGKILL after 5 s); an exit code other than 0 fails the test.
  ~FakeUpstream();

  // Starts it with --port 0 (or the port of a previous run: see restart()) and waits for its
  // "listening on" line.
  ::testing::AssertionResult start(Duration timeout = Duration(10000));
  // Starts it again on the same port after kill9()/terminate(), as an endpoint coming back.
  ::testing::AssertionResult restart(Duration timeout = Duration(10000));

  const std::string& name() const { return name_; }
  uint16_t port() const { return port_; }
  // "127.0.0.1:PORT", for configs.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // nullopt if it cannot be reached.
  std::optional<UpstreamStats> stats() const;
  bool resetStats() const;
  // POST /__control with `body`, e.g. "fail_ratio=0.5", "status=503", "delay_ms=200",
  // "reset=headers", "hang=1", "clear". True on 200.
  bool control(std::string_view body) const;

  void kill9();
  // SIGTERM and wait; the exit code, nullopt if it did not exit in time.
  std::optional<int> terminate(Duration timeout = Duration(5000));
  bool running() { return process_ && process_->running(); }
  Process* process() { return process_.get(); }

 private:
  ::testing::AssertionResult launch(uint16_t port, Duration timeout);

  std::filesystem::path log_path_;
  std::string name_;
  uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace remora::itest
