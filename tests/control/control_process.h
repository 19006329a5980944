#pragma once

// Runs the real remora-control (and remoractl) for integration tests.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http_client.h"
#include "process.h"
#include "util.h"

namespace remora::control::test {

using itest::Duration;

// One JSON call's answer.
struct JsonResponse {
  int status = 0;
  nlohmann::json body;  // null when the body is not JSON
  std::string raw;
  std::string error;  // transport error
};

class ControlProcess {
 public:
  // Config, state file and log live in `dir`; the port is picked once and kept across restarts.
  explicit ControlProcess(const itest::TempDir& dir, std::string name = "control");
  ~ControlProcess();

  // Writes the config (`listen` and `state_file` are added; `extra_yaml` is appended) and starts
  // the binary, waiting until /healthz answers.
  ::testing::AssertionResult start(const std::string& extra_yaml = "");
  // Starts again with the same config, port and state file.
  ::testing::AssertionResult restart();
  void kill9();
  // SIGTERM; the exit code, or nullopt if it did not exit in time.
  std::optional<int> terminate(Duration timeout = Duration(10000));

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string statePath() const { return (dir_ / (name_ + ".state")).string(); }
  std::string log() const { return process_ ? process_->log() : ""; }

  // One request on a fresh connection, with an optional bearer token.
  JsonResponse call(const std::string& method, const std::string& path,
                    const std::string& body = {}, const std::string& token = {});
  JsonResponse get(const std::string& path) { return call("GET", path); }

 private:
  ::testing::AssertionResult launch();

  std::filesystem::path dir_;
  std::string name_;
  std::string config_;
  uint16_t port_ = 0;
  std::unique_ptr<itest::Process> process_;
  int starts_ = 0;
};

struct CtlResult {
  std::optional<int> exit_code;
  std::string output;  // stdout and stderr together
};

// Runs remoractl with `args` against `server` and collects its output.
CtlResult runCtl(const itest::TempDir& dir, const std::string& server,
                 const std::vector<std::string>& args);

}  // namespace remora::control::test
