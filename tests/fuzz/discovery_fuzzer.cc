// libFuzzer target: what the proxy does with one line of the control plane's discovery stream.
//
// Input: one line as the control plane would write it ({"version", "nonce", "clusters": [...]}).
// It goes through the code the proxy runs for a pushed snapshot:
//   DiscoveryClient::parseLine()                      (proxy/src/discovery_client.cc)
//   PushedClusters::parse: each changed cluster's JSON tree -> config::parseClusterJson (endpoints
//   not required)
//   merge into a fixed file config, pushed clusters replacing same-named ones, placeholders for
//   clusters routes name but nobody sent -> config::validateReferences() -> Snapshot::build()
//   the ACK/NACK body the proxy would POST back, dumped as JSON
// The merge mirrors Server::onDiscoveryUpdate()/mergePushed() (private to the Server, which also
// opens sockets and starts workers: too heavy per input); keep the two in step.
//
// Checks: nothing throws out of the pipeline (an exception on the proxy's main loop ends the
// process), a NACK always has a reason, and an accepted snapshot builds and renders as JSON.

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "discovery_client.h"
#include "remora/config/config.h"
#include "remora/config/json.h"
#include "remora/config/parser.h"
#include "runtime.h"
#include "snapshot.h"
#include "stats.h"

namespace {

using namespace remora;

// The proxy's own file: routes name clusters that only the control plane defines.
constexpr std::string_view kFileConfig = R"(
node_id: fuzz
admin: { address: 127.0.0.1:9901 }
control_plane: { address: 127.0.0.1:18000 }
listeners:
  - name: ingress
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: /orders }
        cluster: orders
        fallback: { cluster: orders-readonly }
      - match: { prefix: / }
        clusters: [ { name: web, weight: 3 }, { name: web-canary, weight: 1 } ]
clusters:
  - name: web
    endpoints: [ { address: 127.0.0.1:8080 } ]
)";

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "discovery_fuzzer: %s\n--- input ---\n%.*s\n--- detail ---\n%s\n", what,
               static_cast<int>(input.size()), input.data(), detail.c_str());
  std::abort();
}

struct Fixture {
  Fixture() {
    spdlog::set_level(spdlog::level::off);
    config::LoadResult r = config::loadString(kFileConfig, "file.yaml");
    if (!r.ok()) {
      std::fprintf(stderr, "discovery_fuzzer: bad fixture config:\n%s", r.formatErrors().c_str());
      std::abort();
    }
    file = r.config;
  }
  config::ConfigConstSharedPtr file;
  StatsStore stats;
  RuntimeRegistry runtime{stats, RealTimeSource::instance()};
  uint64_t version = 0;
};

std::string joinErrors(const std::vector<config::ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += "; ";
    out += e.format();
  }
  return out;
}

// Server::onDiscoveryUpdate() without the socket and worker parts. Returns "" (ACK) or the NACK
// reason.
std::string applyUpdate(Fixture& f, const DiscoveryClient::Update& update, std::string_view input) {
  std::vector<config::ConfigError> errors;
  // A fresh parser per input (the server keeps one across pushes): results do not depend on
  // earlier inputs.
  PushedClusters parser;
  std::vector<config::Cluster> clusters = parser.parse(update, errors);
  if (!errors.empty()) return joinErrors(errors);

  std::string merge_error;
  config::ConfigConstSharedPtr merged = mergePushedClusters(f.file, clusters, merge_error);
  if (!merged) return merge_error;
  // Snapshot::build resolves host names; fuzzed names must not turn into DNS queries (slow, and
  // traffic leaving the machine). Numeric addresses and localhost (/etc/hosts) are built.
  for (const auto& c : merged->clusters) {
    for (const auto& e : c.endpoints) {
      in6_addr scratch{};
      const char* h = e.address.host.c_str();
      if (inet_pton(AF_INET, h, &scratch) != 1 && inet_pton(AF_INET6, h, &scratch) != 1 &&
          e.address.host != "localhost") {
        return {};
      }
    }
  }

  std::string error;
  SnapshotConstSharedPtr snap =
      Snapshot::build(merged, ++f.version, "control-plane", f.stats, f.runtime, error);
  if (!snap) {
    if (error.empty()) fail("Snapshot::build failed without a reason", input, "");
    return error;
  }
  // The same push again, as the server builds it: on top of the snapshot it replaces. Every
  // cluster that names no DNS host must share its endpoint set (nothing rebuilt), and the result
  // must link the same endpoints.
  SnapshotConstSharedPtr again =
      Snapshot::build(merged, ++f.version, "control-plane", f.stats, f.runtime, error, snap.get());
  if (!again) fail("the same config failed on top of its own snapshot", input, error);
  for (const auto& c : snap->clusters()) {
    const ClusterInfo* d = again->findCluster(c->name());
    if (d == nullptr) fail("a cluster was lost on a rebuild", input, c->name());
    if (!c->resolves_names && d->endpoint_set != c->endpoint_set) {
      fail("a cluster was rebuilt though nothing changed", input, c->name());
    }
    if (d->endpoints().size() != c->endpoints().size()) {
      fail("a cluster changed size on a rebuild", input, c->name());
    }
    for (size_t i = 0; i < d->endpoints().size(); ++i) {
      if (d->endpoints()[i].runtime != c->endpoints()[i].runtime) {
        fail("an endpoint lost its runtime state on a rebuild", input, c->endpoints()[i].key);
      }
    }
  }
  snap = again;
  // What GET /config and the control plane's views render.
  try {
    (void)config::toJson(snap->config()).dump(2);
  } catch (const nlohmann::json::exception& e) {
    fail("an applied snapshot cannot be rendered as JSON (GET /config would throw)", input,
         e.what());
  }
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture();
  if (size > 256 * 1024) return -1;
  const std::string_view line(reinterpret_cast<const char*>(data), size);

  std::string error;
  std::optional<DiscoveryClient::Update> update;
  try {
    update = DiscoveryClient::parseLine(line, error);
  } catch (const std::exception& e) {
    fail("DiscoveryClient::parseLine threw", line, e.what());
  }
  if (!update) return 0;
  if (error.empty()) {
    try {
      error = applyUpdate(*fixture, *update, line);
    } catch (const std::exception& e) {
      fail("applying a pushed snapshot threw", line, e.what());
    }
  }
  // The ACK/NACK body, as DiscoveryClient::sendAck() builds it.
  nlohmann::json body = {{"node", "fuzz"}, {"version", update->version}, {"nonce", update->nonce}};
  if (!error.empty()) body["error"] = error;
  try {
    (void)body.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("the ACK/NACK body cannot be serialised", line, e.what() + std::string(" / ") + error);
  }
  return 0;
}
