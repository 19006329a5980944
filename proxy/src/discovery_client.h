#pragma once

// The proxy's side of discovery (contract section 5): a long-lived `GET /v1/discovery?node=ID`
// to the control plane, one JSON snapshot per line; each snapshot is handed to the server, which
// validates and applies it (or refuses it), and the outcome is sent back as an ACK or a NACK.
// On any failure the stream is reopened with jittered exponential backoff; the proxy keeps
// serving its last good config meanwhile.
//
// Runs on the main thread's loop.

#include <llhttp.h>
#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "remora/config/config.h"
#include "tls/tls.h"

namespace remora {

class DiscoveryClient {
 public:
  struct Update {
    std::string version;
    std::string nonce;
    // Each element of the snapshot's "clusters" array (proxy cluster schema) as its JSON text,
    // exactly as the control plane wrote it: a push carries every cluster but a registry change
    // touches one, and a cluster whose text did not change needs no parsing (PushedClusters).
    std::vector<std::string> clusters;
  };
  // Applies an update; returns "" to ACK, or why it was refused (NACK).
  using UpdateCallback = std::function<std::string(const Update&)>;

  DiscoveryClient(uv_loop_t* loop, config::Address server, std::string node_id,
                  std::string token_file, UpdateCallback on_update);
  ~DiscoveryClient();

  // TLS for the connections opened from now on (null: plain HTTP).
  void setTls(tls::ClientContextConstSharedPtr tls) { tls_ = std::move(tls); }
  void start();
  void stop();
  bool connected() const;
  uint64_t reconnects() const { return reconnects_; }

  // Backoff before reconnect attempt `n` (0-based): full jitter over [0, min(30s, 250ms * 2^n)].
  static uint64_t backoffMs(uint32_t n, uint64_t random);

  // One line of the discovery stream. nullopt: not an update, and `error` says why when the line
  // is not even a JSON object (it is logged and ignored), or is empty for a heartbeat. Otherwise
  // the update, with `error` set when it must be NACKed without being applied. Never throws,
  // whatever the control plane sends (tests/fuzz/discovery_fuzzer.cc).
  //
  // The line is checked to be JSON and split into its clusters' texts in one pass, without
  // building a JSON tree of the whole snapshot (with 1,000 endpoints that tree cost more than
  // everything else a push does); PushedClusters parses the clusters that changed.
  static std::optional<Update> parseLine(std::string_view line, std::string& error);

 private:
  struct Stream;
  void connect();
  void onStreamClosed(const std::string& why);
  void onLine(std::string_view line);
  void sendAck(const std::string& version, const std::string& nonce, const std::string& error);
  // Sends the oldest queued ACK/NACK on the ACK connection, opening it if needed.
  void flushAcks();
  void onAckConnectionClosed(Stream* s);
  std::string authHeader();

  uv_loop_t* loop_;
  config::Address server_;
  std::string node_id_;
  std::string token_file_;
  UpdateCallback on_update_;
  tls::ClientContextConstSharedPtr tls_;
  Stream* stream_ = nullptr;
  // ACKs and NACKs go one at a time over one keep-alive connection (a connection per ACK cost
  // both sides a connect/accept/close per push, times every proxy); queued while one is in flight.
  Stream* ack_stream_ = nullptr;
  std::deque<std::string> ack_queue_;  // request bodies; the front one is in flight when sent
  bool ack_in_flight_ = false;
  uint32_t ack_retries_ = 0;  // of the front ACK, on a connection that closed unanswered
  uv_timer_t* retry_timer_ = nullptr;
  uint32_t failures_ = 0;
  uint64_t reconnects_ = 0;
  bool stopped_ = true;
  std::mt19937_64 rng_{std::random_device{}()};
};

// The clusters of successive snapshots, parsed with the config validator
// (config::parseCluster on the JSON tree, endpoints optional: the same rules and messages as a
// file). A push carries every cluster but a registry change touches one, so the clusters of the
// previous push are kept by their JSON text and a cluster whose text did not change is not
// parsed again. Only the clusters of the last push are kept (memory stays bounded).
class PushedClusters {
 public:
  // Every cluster of `update`, or the problems appended to `errors` (each as
  // "control-plane: reason"; a cluster that is not JSON at all as "unreadable cluster: ...").
  std::vector<config::Cluster> parse(const DiscoveryClient::Update& update,
                                     std::vector<config::ConfigError>& errors);
  // How many clusters the last parse() had to parse (the rest were unchanged).
  size_t lastParsed() const { return last_parsed_; }

 private:
  std::unordered_map<std::string, config::Cluster> by_text_;
  size_t last_parsed_ = 0;
};

}  // namespace remora
