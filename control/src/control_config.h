#pragma once

// The control plane's own YAML file (contract section 5):
//
//   listen: 127.0.0.1:18000            # REST API and discovery; loopback by default
//   state_file: ./remora-control.state # registry, policies, history, version ("" = in memory only)
//   auth: { tokens_file: tokens.txt }  # optional; lines "name:token"
//   tls: { cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem }  # optional HTTPS (mTLS)
//   default_ttl: 30s                   # for instances that register without a ttl
//   log_level: info
//   history_limit: 1000                # audit entries kept
//   discovery:
//     debounce: 50ms                   # push after this much quiet...
//     max_delay: 500ms                 # ...but never later than this after the first change
//     heartbeat_interval: 10s          # idle streams get a heartbeat line this often
//   clusters: [...]                    # initial policies, the proxy's cluster schema
//
// Errors are reported all at once as file:line:col, like the proxy's config.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "remora/config/config.h"

namespace remora::control {

using config::Duration;

struct DiscoveryOptions {
  Duration debounce{50};
  Duration max_delay{500};
  Duration heartbeat_interval{10000};
};

struct ControlConfig {
  config::Address listen{"127.0.0.1", 18000};
  std::string state_file = "./remora-control.state";
  std::string tokens_file;  // empty: no auth
  std::optional<config::ListenerTls> tls;  // HTTPS on `listen` (client_ca_file: mTLS)
  Duration default_ttl{30000};
  std::string log_level = "info";
  uint32_t history_limit = 1000;
  DiscoveryOptions discovery;
  std::vector<config::Cluster> clusters;  // initial policies
  std::string source_file;
};

struct ControlConfigResult {
  std::optional<ControlConfig> config;  // set only when errors is empty
  std::vector<config::ConfigError> errors;
  bool ok() const { return config.has_value() && errors.empty(); }
  std::string formatErrors() const;  // one "file:line:col: reason" per line
};

ControlConfigResult loadControlConfigFile(const std::string& path);
ControlConfigResult loadControlConfigString(std::string_view yaml,
                                            std::string_view file_name = "<string>");

// One `name:token` line of the tokens file.
struct Token {
  std::string name;
  std::string token;
};

// Reads a tokens file: one `name:token` per line; blank lines and lines starting with '#' are
// skipped. Returns nullopt with the reasons (file:line: ...) in `errors` if any line is bad.
std::optional<std::vector<Token>> loadTokens(const std::string& path,
                                             std::vector<std::string>& errors);

}  // namespace remora::control
