#include "access_log.h"

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

namespace remora {

std::shared_ptr<AccessLogger> AccessLogger::open(const std::string& path, std::string& error) {
  FILE* f = (path == "/dev/stdout") ? stdout : std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    error = "cannot open access log \"" + path + "\": " + std::strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<AccessLogger>(new AccessLogger(f));
}

AccessLogger::~AccessLogger() {
  if (file_ != stdout) std::fclose(file_);
}

void AccessLogger::log(const AccessLogEntry& e) {
  nlohmann::json j = {
      {"start_time", e.start_time}, {"listener", e.listener},
      {"method", e.method},         {"path", e.path},
      {"protocol", e.protocol},     {"status", e.status},
      {"route", e.route},           {"cluster", e.cluster},
      {"upstream", e.upstream},     {"attempts", e.attempts},
      {"bytes_received", e.bytes_received}, {"bytes_sent", e.bytes_sent},
      {"duration_ms", e.duration_ms}, {"request_id", e.request_id},
      {"downstream_address", e.downstream_address},
  };
  if (!e.fallback_reason.empty()) j["fallback_reason"] = e.fallback_reason;
  if (!e.error.empty()) j["error"] = e.error;
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace remora
