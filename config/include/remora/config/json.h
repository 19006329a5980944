#pragma once

// The active config as JSON, for the admin `GET /config` endpoint. The shape mirrors the YAML
// (same keys, durations as "250ms", addresses as "host:port") so an operator recognises their file,
// and the output loads back through loadString() into the same config. Defaults are spelled out;
// optional sections that are not configured (retry, tls, control_plane...) are left out.

#include <nlohmann/json.hpp>
#include <string_view>

#include "remora/config/config.h"

namespace remora::config {

nlohmann::json toJson(const Config& config);
nlohmann::json toJson(const Cluster& cluster);

// Arrays and objects nested deeper than this are refused in JSON from outside the process (the
// control plane's REST bodies, a discovery push): nlohmann's parser takes any depth, but its dump()
// and comparisons recurse once per level, so a few hundred KiB of "[[[[..." would overflow the
// stack. Real documents nest a handful of levels.
inline constexpr size_t kMaxJsonDepth = 64;

// True when `text` nests arrays and objects more than `limit` levels deep (brackets inside
// strings do not count). A linear scan, meant to run before the text is parsed; it does not check
// the syntax.
bool jsonNestsDeeperThan(std::string_view text, size_t limit = kMaxJsonDepth);

}  // namespace remora::config
