#pragma once

// The REST API of contract section 5 (reference in control/README.md). Runs on the loop thread.
// A mutating call is answered only once its change is durable (StatePersister), so a 2xx means
// the change survives kill -9.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "control_config.h"
#include "discovery.h"
#include "http/simple_server.h"
#include "persistence.h"
#include "state.h"

namespace remora::control {

// Bearer tokens from `auth.tokens_file`. Without tokens every call is allowed and the actor is
// "anonymous".
class Authenticator {
 public:
  Authenticator() = default;
  explicit Authenticator(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}
  bool enabled() const { return !tokens_.empty(); }
  // The actor (token name) for a request; nullopt when auth is on and the token is missing or
  // unknown.
  std::optional<std::string> actor(const http::SimpleRequest& request) const;

 private:
  std::vector<Token> tokens_;
};

class ControlApi {
 public:
  struct Deps {
    ControlState& state;
    StatePersister& persister;
    DiscoveryService& discovery;
    const Authenticator& auth;
    config::Duration default_ttl;
    // The registry changed: the owner re-arms its TTL timer.
    std::function<void()> on_registry_changed;
    // A change was committed at this version: the owner persists it and tells discovery.
    std::function<void(uint64_t version)> on_committed;
  };
  explicit ControlApi(Deps deps) : d_(std::move(deps)) {}

  void handle(const http::SimpleRequest& request, const http::ResponderSharedPtr& responder);

 private:
  using Segments = std::vector<std::string>;
  void route(const http::SimpleRequest& req, const Segments& seg, const std::string& actor,
             const http::ResponderSharedPtr& r);

  void listServices(const http::ResponderSharedPtr& r);
  void getService(const std::string& svc, const http::ResponderSharedPtr& r);
  void getInstance(const std::string& svc, const std::string& id,
                   const http::ResponderSharedPtr& r);
  void registerInstance(const http::SimpleRequest& req, const std::string& svc,
                        const std::string& id, const std::string& actor,
                        const http::ResponderSharedPtr& r);
  void heartbeat(const http::SimpleRequest& req, const std::string& svc, const std::string& id,
                 const std::string& actor, const http::ResponderSharedPtr& r);
  void deregister(const std::string& svc, const std::string& id, const std::string& actor,
                  const http::ResponderSharedPtr& r);
  void listClusters(const http::ResponderSharedPtr& r);
  void getCluster(const std::string& name, const http::ResponderSharedPtr& r);
  void putPolicy(const http::SimpleRequest& req, const std::string& name, const std::string& actor,
                 const http::ResponderSharedPtr& r);
  void deletePolicy(const std::string& name, const std::string& actor,
                    const http::ResponderSharedPtr& r);
  void ack(const http::SimpleRequest& req, const http::ResponderSharedPtr& r);
  void history(const http::SimpleRequest& req, const http::ResponderSharedPtr& r);

  nlohmann::json clusterView(const std::string& name) const;
  // Commits a change, then answers `status` with `body` + "version" once it is durable.
  void commitAndRespond(const std::string& actor, std::string change, int status,
                        nlohmann::json body, const http::ResponderSharedPtr& r);
  // Answers once everything up to the current version is durable (an unchanged PUT must not
  // report success before the change it repeats is on disk).
  void respondWhenDurable(int status, nlohmann::json body, const http::ResponderSharedPtr& r);

  Deps d_;
};

// {"error": message} with `status`.
http::SimpleResponse jsonError(int status, const std::string& message);
http::SimpleResponse jsonResponse(int status, const nlohmann::json& body);

}  // namespace remora::control
