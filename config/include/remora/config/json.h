#pragma once

// The active config as JSON, for the admin `GET /config` endpoint. The shape mirrors the YAML
// (same keys, durations as "250ms", addresses as "host:port") so an operator recognises their file,
// and the output loads back through loadString() into the same config. Defaults are spelled out;
// optional sections that are not configured (retry, tls, control_plane...) are left out.

#include <nlohmann/json.hpp>

#include "remora/config/config.h"

namespace remora::config {

nlohmann::json toJson(const Config& config);
nlohmann::json toJson(const Cluster& cluster);

}  // namespace remora::config
