#pragma once

// Helpers shared by the deploy tests: paths into the source tree, running a command and
// collecting its output, finding a tool on PATH, and the remora / remora-control validators.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util.h"

namespace remora::deploy_test {

using itest::Duration;

// <source dir>/<relative>.
std::filesystem::path sourcePath(std::string_view relative);
// <build dir>/<relative> (where remora, remora-control, ... are).
std::filesystem::path buildPath(std::string_view relative);

struct CommandResult {
  std::optional<int> exit_code;  // nullopt: did not start, or did not exit within the timeout
  std::string output;            // stdout and stderr together (or why it did not start)
};

// Runs `binary args...` with its output in a log file inside `dir`, waiting up to `timeout`.
CommandResult runCommand(const itest::TempDir& dir, const std::string& binary,
                         const std::vector<std::string>& args,
                         Duration timeout = Duration(30000),
                         const std::map<std::string, std::string>& env = {});

// The full path of `tool` if it is an executable on $PATH (or in /usr/sbin, /sbin).
std::optional<std::string> findTool(std::string_view tool);

// `remora --validate` and `remora-control --validate` on `content`, written to <dir>/<name>.
CommandResult validateProxyConfig(const itest::TempDir& dir, std::string_view name,
                                  std::string_view content);
CommandResult validateControlConfig(const itest::TempDir& dir, std::string_view name,
                                    std::string_view content);

// Every file under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
std::vector<std::filesystem::path> filesUnder(const std::filesystem::path& dir,
                                              const std::vector<std::string>& suffixes);

}  // namespace remora::deploy_test
