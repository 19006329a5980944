#include "deploy_util.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "process.h"

namespace remora::deploy_test {

std::filesystem::path sourcePath(std::string_view relative) {
  return std::filesystem::path(REMORA_SOURCE_DIR) / relative;
}

std::filesystem::path buildPath(std::string_view relative) {
  return std::filesystem::path(REMORA_BUILD_DIR) / relative;
}

CommandResult runCommand(const itest::TempDir& dir, const std::string& binary,
                         const std::vector<std::string>& args, Duration timeout,
                         const std::map<std::string, std::string>& env) {
  static std::atomic<int> counter{0};
  const std::filesystem::path log =
      dir / (std::filesystem::path(binary).filename().string() + "-" +
             std::to_string(++counter) + ".out");
  itest::Process p(std::filesystem::path(binary).filename().string(), binary, args, log, env);
  CommandResult out;
  std::string error;
  if (!p.start(&error)) {
    out.output = "cannot start " + binary + ": " + error;
    return out;
  }
  out.exit_code = p.waitExit(timeout);
  out.output = p.log();
  if (!out.exit_code) out.output += "\n(still running after " +
                                    std::to_string(timeout.count()) + " ms; killed)";
  return out;
}

std::optional<std::string> findTool(std::string_view tool) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    const size_t colon = std::min(path.find(':', start), path.size());
    const std::string dir = path.substr(start, colon - start);
    start = colon + 1;
    if (dir.empty()) continue;
    const std::filesystem::path candidate = std::filesystem::path(dir) / tool;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

namespace {

CommandResult validateWith(const itest::TempDir& dir, const std::string& binary,
                           std::string_view name, std::string_view content) {
  const std::filesystem::path file = dir.writeFile(name, content);
  return runCommand(dir, binary, {"--validate", file.string()}, Duration(20000));
}

}  // namespace

CommandResult validateProxyConfig(const itest::TempDir& dir, std::string_view name,
                                  std::string_view content) {
  return validateWith(dir, REMORA_BIN, name, content);
}

CommandResult validateControlConfig(const itest::TempDir& dir, std::string_view name,
                                    std::string_view content) {
  return validateWith(dir, REMORA_CONTROL_BIN, name, content);
}

std::vector<std::filesystem::path> filesUnder(const std::filesystem::path& dir,
                                              const std::vector<std::string>& suffixes) {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    for (const std::string& s : suffixes) {
      if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        out.push_back(entry.path());
        break;
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace remora::deploy_test
