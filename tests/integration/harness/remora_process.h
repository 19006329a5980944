#pragma once

// Runs the real `remora` binary with a config written by the test.
//
// Configs are YAML templates with placeholders, so every port is picked at run time:
//   ${LISTEN}   -> 127.0.0.1:<port "listen">     ${ADMIN} -> 127.0.0.1:<port "admin">
//   ${addr:X}   -> 127.0.0.1:<port "X">          ${port:X} -> <port "X">
//   ${DIR}      -> the test's temp dir           ${NAME}  -> vars["NAME"] given by the test
// Ports are chosen with freePort() on first use and stay fixed for the life of the object (so a
// reloaded config keeps its listener); a start that fails because a port was taken meanwhile is
// retried with fresh ports.

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_client.h"
#include "process.h"
#include "util.h"

namespace remora::itest {

using Vars = std::map<std::string, std::string>;
using Labels = std::map<std::string, std::string>;

// Expands the placeholders above. Unknown placeholders are an error (nullopt, reason in `error`).
std::optional<std::string> renderTemplate(std::string_view tmpl, const Vars& vars,
                                          std::map<std::string, uint16_t>& ports,
                                          const std::filesystem::path& dir,
                                          std::string* error = nullptr);

// Prometheus text format: the sum of every sample of metric `name` whose labels include all of
// `labels` (a subset match, so {{"code","200"}} adds up every listener). nullopt if none matched.
std::optional<double> parseMetric(std::string_view text, std::string_view name,
                                  const Labels& labels = {});

// The proxy binary: $REMORA_ITEST_REMORA if set, else the one of this build tree (REMORA_BIN);
// and whether it is there.
const char* remoraBinary();
bool remoraBinaryExists();

struct ValidateResult {
  std::optional<int> exit_code;  // nullopt if it did not exit within the timeout
  std::string output;            // stdout and stderr together
  std::filesystem::path file;    // the file that was validated
};

class RemoraProcess {
 public:
  // The log goes to <dir>/<name>.log, the config to <dir>/<name>.yaml.
  explicit RemoraProcess(const TempDir& dir, std::string name = "remora");
  // Stops a still-running proxy with SIGTERM (SIGKILL after 5 s). An exit code other than 0
  // then fails the test: that is how sanitizer reports (leaks at exit, ...) surface.
  ~RemoraProcess();

  // Extra command-line arguments after `--config FILE` (default: --log-level debug).
  void setExtraArgs(std::vector<std::string> args) { extra_args_ = std::move(args); }
  void setEnv(std::map<std::string, std::string> env) { env_ = std::move(env); }

  // Renders and writes the config, starts `remora --config`, and waits until admin GET /ready
  // answers 200. The config must put the admin API on ${ADMIN}.
  ::testing::AssertionResult start(std::string_view yaml_template, const Vars& vars = {},
                                   Duration ready_timeout = Duration(15000));
  bool isReady() const;

  // Rewrites the config file (atomically) with the same port assignments.
  ::testing::AssertionResult writeConfig(std::string_view yaml_template, const Vars& vars = {});
  // SIGHUP: the proxy re-reads its file. Asynchronous: wait for its effect (or for
  // remora_config_updates_total) with waitFor.
  bool reload();
  ::testing::AssertionResult reload(std::string_view yaml_template, const Vars& vars = {});

  // SIGTERM and wait for the exit code (nullopt if it did not exit in time).
  std::optional<int> terminate(Duration timeout = Duration(15000));
  void kill9();
  bool running() { return process_ && process_->running(); }
  Process* process() { return process_.get(); }

  // Port assigned to a placeholder name (allocated now if it was never used); 0 on failure.
  uint16_t port(const std::string& name);
  uint16_t listenPort() { return port("listen"); }
  uint16_t adminPort() { return port("admin"); }
  const std::filesystem::path& configPath() const { return config_path_; }
  const std::string& renderedConfig() const { return rendered_; }

  // A client for the "listen" listener.
  HttpClient client(Duration timeout = Duration(10000)) {
    return HttpClient(listenPort(), "127.0.0.1", timeout);
  }
  // One admin request on a fresh connection.
  Response admin(std::string_view path, std::string_view method = "GET");
  // GET /stats (the Prometheus text), "" if unreachable.
  std::string stats();
  // One metric from /stats, see parseMetric().
  std::optional<double> metric(std::string_view name, const Labels& labels = {});

  // Runs `remora --validate <dir>/<file_name>` on `content` and collects its output.
  // `config_form`: run it as `remora --config FILE --validate` (Envoy's habit) rather than
  // `remora --validate FILE`.
  static ValidateResult validate(const TempDir& dir, std::string_view file_name,
                                 std::string_view content, Duration timeout = Duration(10000),
                                 bool config_form = false);

 private:
  std::filesystem::path dir_;
  std::string name_;
  std::filesystem::path config_path_;
  std::filesystem::path log_path_;
  std::vector<std::string> extra_args_{"--log-level", "debug"};
  std::map<std::string, std::string> env_;
  std::map<std::string, uint16_t> ports_;
  std::string rendered_;
  std::unique_ptr<Process> process_;
};

}  // namespace remora::itest
