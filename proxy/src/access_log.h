#pragma once

// Optional JSON-lines access log: one object per finished request, written by whichever worker
// finished it. Lines are formatted by the worker and appended under a mutex, so lines never
// interleave.

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace remora {

struct AccessLogEntry {
  std::string start_time;  // RFC 3339, UTC
  std::string listener;
  std::string method;
  std::string path;
  std::string protocol;
  int status = 0;
  std::string route;
  std::string cluster;
  std::string upstream;
  uint32_t attempts = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  double duration_ms = 0;
  std::string request_id;
  std::string downstream_address;
  std::string fallback_reason;
  std::string error;  // why a local reply was sent, empty for proxied responses
};

class AccessLogger {
 public:
  // Opens (appends to) `path`. Returns nullptr and sets `error` on failure.
  static std::shared_ptr<AccessLogger> open(const std::string& path, std::string& error);
  ~AccessLogger();
  void log(const AccessLogEntry& entry);

 private:
  explicit AccessLogger(FILE* f) : file_(f) {}
  std::mutex mutex_;
  FILE* file_;
};

}  // namespace remora
