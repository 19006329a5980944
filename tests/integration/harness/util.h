#pragma once

// Small helpers shared by every integration test: ports, waiting, checksums, temp dirs.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace remora::itest {

using Duration = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). Never
// returns the same port twice in one process. Another process may still grab it before we use
// it; RemoraProcess therefore retries its start with fresh ports when a bind fails. Returns 0 if
// no port could be found.
uint16_t freePort();

// Polls `predicate` every `interval` until it returns true (-> true) or `timeout` elapses
// (-> false; the predicate is evaluated one last time at the deadline). This is the only place
// integration tests sleep.
bool waitFor(const std::function<bool()>& predicate, Duration timeout = Duration(5000),
             Duration interval = Duration(10));

// Lower-case hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

// Reads a whole file; "" if it cannot be read.
std::string readFile(const std::filesystem::path& path);
// Writes `content` to `path` atomically (temp file + rename), so a process reloading the file
// never sees half of it.
bool writeFileAtomic(const std::filesystem::path& path, std::string_view content);

// An admin or fake-upstream JSON body; a discarded value (is_discarded()) when it is not JSON.
nlohmann::json parseJson(const std::string& body);

// The last `max_lines` lines of `text`.
std::string tailLines(std::string_view text, size_t max_lines);

// A fresh directory per test, named after the running test:
// $TMPDIR/remora-itest/<Suite>.<Test>-XXXXXX. Removed on destruction if the test passed; kept
// (and its path printed) if it failed, so logs and configs can be inspected.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }
  // Writes `content` to `name` inside the directory and returns the full path.
  std::filesystem::path writeFile(std::string_view name, std::string_view content) const;

 private:
  std::filesystem::path path_;
};

}  // namespace remora::itest
