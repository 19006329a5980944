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

#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "remora/config/config.h"
#include "tls/tls.h"

namespace remora {

class DiscoveryClient {
 public:
  struct Update {
    std::string version;
    std::string nonce;
    nlohmann::json clusters;  // array, proxy cluster schema
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
  static std::optional<Update> parseLine(std::string_view line, std::string& error);

 private:
  struct Stream;
  void connect();
  void onStreamClosed(const std::string& why);
  void onLine(const std::string& line);
  void sendAck(const std::string& version, const std::string& nonce, const std::string& error);
  std::string authHeader();

  uv_loop_t* loop_;
  config::Address server_;
  std::string node_id_;
  std::string token_file_;
  UpdateCallback on_update_;
  tls::ClientContextConstSharedPtr tls_;
  Stream* stream_ = nullptr;
  uv_timer_t* retry_timer_ = nullptr;
  uint32_t failures_ = 0;
  uint64_t reconnects_ = 0;
  bool stopped_ = true;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace remora
